"""The pipeline stages: read inputs, call the pure functions, write artifacts atomically.

One function per `ctcoupling` subcommand. Nothing here computes anything of interest; it wires
files to the math in the layers below (data/, model/, train/, measure/, results/) and records provenance.
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from ctcoupling.core import artifacts
from ctcoupling.data import datasets
from ctcoupling.config import params as P
from ctcoupling.core.errors import UserError
from ctcoupling.pipeline.dag import (ANALYSIS_DIR, AUDIT_CSV, AUDIT_MD, CODE, THEORY_TABLES, checkpoint_inputs,
                       classifier_datasets, classifier_file, classifier_record, curve_inputs, data_manifest, data_npz,
                       evaluate_inputs, figure_runs, plot_specs, report_outs, run_file, theory_datasets, theory_inputs,
                       theory_outs, theory_seed_file)


def _provenance(stage: str, params: dict, inputs: list) -> dict:
    """artifacts.provenance with the sha256 of the modules the stage runs (pipeline.CODE)."""
    return artifacts.provenance(stage, params, inputs, CODE[stage])


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _csv(rows: list[dict]) -> str:
    """Rows of one schema as CSV text (the header from the first row)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def prepare(params: dict, dataset: str) -> None:
    if dataset not in params["datasets"]:
        raise UserError(f"no data set '{dataset}' under datasets (have: {', '.join(params['datasets'])})")
    spec = params["datasets"][dataset]
    arrays = datasets.build(spec)
    out = Path(data_npz(dataset))
    inputs = datasets.source_files(spec)
    artifacts.write_npz(out, arrays)  # streamed: no second copy of a large set in memory
    manifest = {
        "name": dataset,
        "source": spec["source"],
        "file": str(out),
        "sha256": artifacts.sha256_file(out),
        "arrays": datasets.describe(arrays),
        "splits": {"train": len(arrays["x_train"]), "test": len(arrays["x_test"])},
        "provenance": _provenance("prepare", {f"datasets.{dataset}": spec}, inputs),
    }
    artifacts.write_json(data_manifest(dataset), manifest)
    _say(f"prepared {dataset}: {manifest['splits']} -> {out}")


def train(params: dict, name: str, source: str, progress: bool = True, resume: bool = False,
          device: str = "cpu", tensorboard: str | None = None) -> None:
    from ctcoupling.train import trainlog
    from ctcoupling.train import training

    exp = P.experiment(params, name, source)
    config = P.train_config(exp)
    trainer = P.trained_by(params).get(name)
    if trainer:
        return _copy_training(params, exp, trainer)
    d = datasets.load_prepared(data_npz(exp.dataset))
    state_path = Path(run_file(name, "train_state.pt"))
    rank, _ = training.distributed()
    live = trainlog.tensorboard_dir(tensorboard, name) if rank == 0 else None
    on_log = trainlog.TensorBoardLog(live) if live else None
    t0 = time.perf_counter()
    try:
        x = d["x_train"] if d["x_train"].dtype == np.uint8 else datasets.to_model_space(d["x_train"])  # uint8: per batch
        ckpt, log, snapshots = training.train(config, x, state_path, resume, progress, device, on_log, d.get("y_train"),
                                              exact_teacher(params, exp, d))
    finally:
        if on_log:
            on_log.close()
    wall_s = time.perf_counter() - t0
    if rank != 0:
        return
    ckpt["data_dtype"] = str(d["x_train"].dtype)
    artifacts.write_torch(run_file(name, "model.pt"), ckpt)
    trainlog.write_dvclive(log, run_file(name, trainlog.DVCLIVE_DIR))
    artifacts.write_torch(run_file(name, "snapshots.pt"), {"config": config, "data_shape": ckpt["data_shape"],
                                                           "snapshots": snapshots})
    _train_record(params, exp, log[-1]["loss"],
                  sum(v.numel() for k, v in ckpt["model"].items() if not k.endswith("resample_filter")))
    state_path.unlink(missing_ok=True)  # the run is complete; its final weights are in model.pt
    steps = exp.config["train"]["steps"]
    _say(f"trained {name}: {steps} steps in {wall_s:.1f} s ({steps / wall_s:.1f} it/s), final loss {log[-1]['loss']:.4g}")


def exact_teacher(params: dict, exp: P.Experiment, prepared: dict):
    """sCD-exact's teacher: the exact velocity of the data set's Gaussian mixture, or of its training
    set (`objective.teacher`); None for another objective."""
    from ctcoupling.model import trigflow

    spec = exp.config["objective"]
    if spec["kind"] != "scd_exact":
        return None
    x = datasets.to_model_space(prepared["x_train"])
    return trigflow.mixture_teacher_or_empirical(datasets.mixture(params["datasets"][exp.dataset]), x,
                                                 spec["kernel"]["sigma_data"], spec["teacher"])


def _train_record(params: dict, exp: P.Experiment, final_loss: float, parameters: int) -> None:
    inputs = [data_npz(exp.dataset)] + checkpoint_inputs(exp.config)
    artifacts.write_json(run_file(exp.name, "train.json"), {
        "experiment": exp.name,
        "final_loss": final_loss,
        "parameters": parameters,
        "provenance": _provenance("train", {"experiment": P.train_config(exp), "overrides": list(exp.overrides),
                                            "threads": params["threads"]}, inputs),
    })


def _copy_training(params: dict, exp: P.Experiment, trainer: str) -> None:
    """A run whose training is `trainer`'s bit for bit (P.trained_by): its checkpoint, snapshots and
    training log copied, and its own train.json, the bytes training it again would write."""
    import os
    import shutil

    from ctcoupling.train.trainlog import DVCLIVE_DIR

    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 copies
        return
    record = Path(run_file(trainer, "train.json"))
    if not record.is_file():
        raise UserError(f"{record}: not found; {exp.name} is trained as {trainer} (the same training "
                        f"settings): run `ctcoupling train --experiment {trainer}` first")
    for f in ("model.pt", "snapshots.pt"):
        artifacts.write_bytes(run_file(exp.name, f), Path(run_file(trainer, f)).read_bytes())
    with artifacts.atomic_dir(run_file(exp.name, DVCLIVE_DIR)) as tmp:
        shutil.copytree(run_file(trainer, DVCLIVE_DIR), tmp, dirs_exist_ok=True)
    done = json.loads(record.read_text())
    _train_record(params, exp, done["final_loss"], done["parameters"])
    _say(f"trained {exp.name} as {trainer} (the same training settings, bit for bit): its run copied")


def load_checkpoint(path: str) -> dict:
    import torch

    if not Path(path).is_file():
        raise UserError(f"{path}: checkpoint not found; run `ctcoupling train` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: unreadable checkpoint ({type(e).__name__}); train again") from None


def sample(params: dict, name: str, source: str, progress: bool = True, device: str = "cpu") -> None:
    from ctcoupling.model import networks
    from ctcoupling.model import sampling
    from ctcoupling.results import runs as report_mod

    exp = P.experiment(params, name, source)
    spec = exp.config["sample"]
    ckpt, model, encoder = load_run(name, spec["use_ema"])
    x = draw_samples(exp, (ckpt, model, encoder), progress=progress, device=device)
    seed, labels = exp.seed + spec["seed_offset"], spec.get("labels", "balanced")
    if ckpt["data_dtype"] == "uint8":
        x = datasets.to_uint8(x)
    y = sampling.class_labels(labels, len(x), networks.label_dim(model.net), seed + 1)  # those generate used
    artifacts.write_npz(run_file(name, "samples.npz"), {"x": x, **({"y": y.numpy()} if y is not None else {})})
    artifacts.write_bytes(run_file(name, "samples.png"), report_mod.preview_png(x, name))
    artifacts.write_json(run_file(name, "sample.json"), {
        "experiment": name, "n": len(x), "nfe": spec["steps"], "t_mid": spec["t_mid"],
        "provenance": _provenance("sample", {"sample": spec}, [run_file(name, "model.pt")]),
    })
    _say(f"sampled {name}: {len(x)} samples, {spec['steps']} step(s)")


def load_run(name: str, use_ema: bool = True) -> tuple[dict, object, object]:
    """(checkpoint, model, encoder) of a trained run: its (EMA) model and VC's (EMA) encoder, None without."""
    from ctcoupling.train import training

    ckpt = load_checkpoint(run_file(name, "model.pt"))
    return ckpt, training.load_model(ckpt, use_ema), training.load_encoder(ckpt, use_ema)


def draw_samples(exp: P.Experiment, run: tuple[dict, object, object], n: int | None = None,
                 t_mid: list[float] | None = None, ot_pairing: bool | None = None, progress: bool = False,
                 device: str = "cpu") -> np.ndarray:
    """The experiment's samples in model space as the sample stage draws them (its seed, batch, labels;
    VC's later steps from the encoder's posterior), from `run` (load_run's). n, t_mid (the sampler's
    intermediate times: [] one step) and ot_pairing default to the experiment's `sample` settings; the
    scripts that re-score runs at another n or sampler change only those."""
    from ctcoupling.model import sampling

    ckpt, model, encoder = run
    spec = exp.config["sample"]
    return sampling.generate(model, spec["n"] if n is None else n, tuple(ckpt["data_shape"]), spec["batch"],
                             exp.seed + spec["seed_offset"], spec["t_mid"] if t_mid is None else t_mid, progress,
                             device, encoder, spec["ot_pairing"] if ot_pairing is None else ot_pairing,
                             spec.get("labels", "balanced")).numpy()


def load_samples(path: str) -> np.ndarray:
    if not Path(path).is_file():
        raise UserError(f"{path}: samples not found; run `ctcoupling sample` first")
    with np.load(path, allow_pickle=False) as z:
        return z["x"]


def classifier(params: dict, dataset: str, source: str) -> None:
    """The small CNN whose features score a data set's samples (FID/KID/IS/PR on CPU-scale data)."""
    from ctcoupling.data import classifier as clf

    if dataset not in classifier_datasets(params):
        raise UserError(f"{source}: no experiment on '{dataset}' evaluates with `evaluate.fidelity.features: "
                        "classifier`, so it has no classifier stage")
    spec = params["classifier"]
    d = datasets.load_prepared(data_npz(dataset))
    t0 = time.perf_counter()
    state, acc = clf.train_classifier(d["x_train"], d["y_train"], d["x_test"], d["y_test"], spec["seed"],
                                      spec["epochs"], spec["batch"], spec["lr"], threads=params["threads"])
    artifacts.write_torch(classifier_file(dataset), state)
    artifacts.write_json(classifier_record(dataset), {
        "dataset": dataset, "held_out_accuracy": acc, "n_train": len(d["x_train"]), "n_test": len(d["x_test"]),
        "file": classifier_file(dataset), "sha256": artifacts.sha256_file(classifier_file(dataset)),
        "provenance": _provenance("classifier", {"classifier": spec}, [data_npz(dataset)]),
    })
    _say(f"classifier {dataset}: held-out accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s)")


def _stream(exp, device: str):
    """make_stream(nfe, seed) for fidelity.evaluate: spec.n samples of the trained model, batch by batch,
    each batch from its own seed (experiment seed, stream seed, NFE, batch index)."""
    from ctcoupling.measure import fidelity
    from ctcoupling.model import sampling

    ckpt, model, encoder = load_run(exp.name, exp.config["sample"]["use_ema"])
    shape, spec = tuple(ckpt["data_shape"]), exp.config["evaluate"]["fidelity"]
    t_mid, ot_pairing = exp.config["sample"]["t_mid"], exp.config["sample"]["ot_pairing"]
    labels = exp.config["sample"].get("labels", "balanced")

    def make(nfe: int, seed: int):
        def batch(b: int):
            m = min(spec["batch"], spec["n"] - b * spec["batch"])
            s = int(np.random.SeedSequence([exp.seed, seed, nfe, b]).generate_state(1)[0])
            return sampling.generate(model, m, shape, m, s, t_mid[:nfe - 1], False, device, encoder, ot_pairing,
                                     labels, label_offset=b * spec["batch"])
        return fidelity.SampleStream(batch, spec["n"], spec["batch"], spec["protocol"])
    return make


def _point_metrics(params: dict, dataset: str, x: np.ndarray, ref: np.ndarray, n: int) -> dict:
    """W2 on the first n samples and held-out points (model space); energy distance and, on the
    two-Gaussian set, the between-modes fraction for 2-D points."""
    from ctcoupling.measure import distances

    n = min(n, len(x), len(ref))
    values = {"w2": distances.w2_exact(x[:n], ref[:n])}
    if P.is_2d(params, dataset):
        values["energy"] = distances.energy_distance(x[:n], ref[:n])
    if params["datasets"][dataset]["source"] == "two_gaussians":
        values["between_modes"] = distances.between_modes(x)
    return values


def _has_posterior(params: dict, exp) -> bool:
    """Whether evaluate measures the encoder's posterior (_posterior): VC on the two-Gaussian set."""
    return params["datasets"][exp.dataset]["source"] == "two_gaussians" and "encoder_network" in exp.config


def evaluate_uses_torch(params: dict, exp) -> bool:
    """Whether `evaluate` runs a network (fidelity features, a VC encoder): else it scores points with
    numpy and POT only, and the command leaves torch unimported (cli; 1 s of a 2-D job's start)."""
    return exp.config["evaluate"]["fidelity"]["features"] != "none" or _has_posterior(params, exp)


def _posterior(params: dict, exp, prepared: dict) -> dict:
    """VC on the two-Gaussian set: how well the encoder's posterior z | x tells the two modes apart."""
    if not _has_posterior(params, exp):
        return {}
    import torch  # after the check: the other runs' evaluate needs no torch (evaluate_uses_torch)

    from ctcoupling.measure import distances
    from ctcoupling.train import training

    encoder = training.load_encoder(load_checkpoint(run_file(exp.name, "model.pt")), exp.config["sample"]["use_ema"])
    x = torch.from_numpy(datasets.to_model_space(prepared["x_test"]))
    with torch.no_grad():
        mu, s = encoder(x)
        z = mu + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(exp.seed + 2000))
    return distances.posterior_separation(mu.numpy(), s.numpy(), z.numpy(), x[:, 1].numpy() > 0)


def evaluate(params: dict, name: str, source: str, device: str = "cpu") -> None:
    exp = P.experiment(params, name, source)
    spec = exp.config["evaluate"]
    if spec["fidelity"]["features"] != "none" and "fd_dinov2" in spec["fidelity"]["metrics"]:
        from ctcoupling.measure import fidelity  # FD_DINOv2 is asked for: a missing weights file stops here, before any work

        fidelity.dinov2_weights(spec["fidelity"].get("dinov2_weights"), spec["fidelity"].get("dinov2_sha256"))
    samples = load_samples(run_file(name, "samples.npz"))
    prepared = datasets.load_prepared(data_npz(exp.dataset))
    ref, split = datasets.point_reference(prepared)
    x, ref = datasets.to_model_space(samples), datasets.to_model_space(ref)
    n = min(spec["n"], len(x), len(ref))
    values = _point_metrics(params, exp.dataset, x, ref, n) | _posterior(params, exp, prepared)
    inputs = evaluate_inputs(params, exp)
    result = {
        "experiment": name, "dataset": exp.dataset, "objective": exp.objective, "coupling": exp.coupling,
        "seed": exp.seed, "nfe": exp.config["sample"]["steps"], "n": n, "w2_reference": split, "metrics": values,
        "provenance": _provenance("evaluate", {"evaluate": spec}, inputs),
    }
    fid_spec = spec["fidelity"]
    if fid_spec["features"] != "none":
        from ctcoupling.measure import fidelity

        reference, key = prepared[f"x_{fid_spec['reference']}"], f"{exp.dataset}-{fid_spec['reference']}"
        subset = fidelity.reference_subset(len(reference), fid_spec.get("reference_n"))
        if subset is not None:
            reference, key = reference[subset], f"{key}-{len(subset)}"
        started = time.perf_counter()
        record = fidelity.evaluate(fid_spec, reference, key,
                                   classifier_file(exp.dataset) if fid_spec["features"] == "classifier" else None,
                                   samples, exp.config["sample"]["steps"],
                                   _stream(exp, device) if fid_spec["stream"] else None, device)
        if not record["available"]:
            _say(f"warning: {name}: no {fid_spec['features']} metrics: {record['reason']}")
        else:  # the rate goes to the log only: eval.json holds no timing
            images = sum(r["n_generated"] for r in record["runs"])
            _say(f"{name}: {images} images {'generated and ' if fid_spec['stream'] else ''}scored at "
                 f"{images / (time.perf_counter() - started):.1f} img/s")
        for nfe, summary in record["summary"].items():
            suffix = "" if not fid_spec["stream"] else f"_{nfe}step"
            values.update({f"{k}{suffix}": v["mean"] for k, v in summary.items()})
        result["fidelity"] = record
    artifacts.write_json(run_file(name, "eval.json"), result)
    shown = ", ".join(f"{k} = {v:.4g}" for k, v in values.items())
    _say(f"evaluated {name}: {shown} ({n} {split} points for W2)")


def snapshot_points(name: str) -> tuple[dict, list[dict]]:
    """(snapshots.pt, points) of a trained run: its EMA snapshots before the final step, then the final EMA
    weights of model.pt, each {"step", "ema"[, "ema_encoder"]}: what the curve stage scores. The first is the
    snapshot file (its config and data shape: what `training.load_model` builds the model from)."""
    import torch

    path = run_file(name, "snapshots.pt")
    if not Path(path).is_file():
        raise UserError(f"{path}: snapshots not found; run `ctcoupling train --experiment {name}` first")
    try:
        snaps = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: unreadable snapshots ({type(e).__name__}); train again") from None
    final = load_checkpoint(run_file(name, "model.pt"))
    points = [x for x in snaps["snapshots"] if x["step"] < final["step"]]  # the intermediate ones, then the final
    points.append({"step": final["step"], "ema": final["ema"], **({"ema_encoder": final["ema_encoder"]}
                                                                   if "ema_encoder" in final else {})})
    return snaps, points


def curve(params: dict, name: str, source: str, device: str = "cpu") -> None:
    """The training curve of one experiment: every snapshot of snapshots.pt and the final EMA weights
    of model.pt, each sampled from the same noise and measured on the data set's metric
    (runs/EXP/curve.csv, curve.json: best and final). The snapshots are EMA weights, what sampling
    uses by default (`sample.use_ema`)."""
    from ctcoupling.results import curves
    from ctcoupling.train import training

    exp = P.experiment(params, name, source)
    snaps, points = snapshot_points(name)
    spec, n = exp.config["sample"], exp.config["evaluate"]["curve"]["n"]
    prepared = datasets.load_prepared(data_npz(exp.dataset))
    ref = datasets.to_model_space(datasets.point_reference(prepared)[0])
    fid_spec = exp.config["evaluate"]["fidelity"]
    scored_by_classifier = not P.is_2d(params, exp.dataset) and fid_spec["features"] == "classifier"
    if scored_by_classifier:
        from ctcoupling.measure import fidelity  # here: torch-fidelity's import (torchvision, 1.3 s) is for image sets only
        from ctcoupling.data.classifier import EXTRACTOR

        reference = fidelity.reference_uint8(prepared[f"x_{fid_spec['reference']}"])
    rows = []
    for snap in points:
        model = training.load_model(snaps, weights=snap["ema"])
        encoder = training.load_encoder(snaps, weights=snap.get("ema_encoder"))
        x = draw_samples(exp, (snaps, model, encoder), n=n, device=device)
        if not np.isfinite(x).all():
            raise UserError(f"{name}: the snapshot at step {snap['step']} samples NaN or inf")
        row = {"step": snap["step"]}
        if scored_by_classifier:
            row |= fidelity.compute(datasets.to_uint8(x), reference, EXTRACTOR, classifier_file(exp.dataset),
                                    fidelity.cache_dir(), f"{exp.dataset}-{fid_spec['reference']}", ["fid", "kid"],
                                    fid_spec["batch"], device, kid_subsets=exp.config["evaluate"]["curve"]["kid_subsets"])
        else:
            row |= _point_metrics(params, exp.dataset, x, ref, n)
        rows.append(row)
    summary = curves.best_and_final(rows, curves.primary_metric(rows[0]))
    artifacts.write_text(run_file(name, "curve.csv"), _csv(rows))
    artifacts.write_json(run_file(name, "curve.json"), {
        "experiment": name, "dataset": exp.dataset, "objective": exp.objective, "coupling": exp.coupling,
        "seed": exp.seed, "n": n, **summary,
        "provenance": _provenance("curve", {"sample": spec, "curve": exp.config["evaluate"]["curve"]},
                                           curve_inputs(params, exp)),
    })
    b, f = summary["best"], summary["final"]
    _say(f"curve {name}: {len(rows)} snapshots; {summary['metric']} best {b['value']:.4g} at step {b['step']}, "
         f"final {f['value']:.4g}")


def preset_deviations(registry: list[dict]) -> dict[str, list[dict]]:
    """For each registry row a preset reproduces, how that preset's cell differs from the official run
    (official.preset_deviations); the presets are the audit stage's inputs (pipeline.audit_presets)."""
    from ctcoupling.config import official

    loaded, out = {}, {}
    for row in registry:
        r = row["reproduce"]
        if r is None or not Path(r["params"]).is_file():
            continue
        if r["params"] not in loaded:
            preset = P.load(r["params"])
            loaded[r["params"]] = (P.experiments(preset), preset.get("official", {}))
        out[row["id"]] = official.preset_deviations(*loaded[r["params"]], r)
    return out


def audit(params: dict, source: str, registry_path: str) -> None:
    """Every published number against this params file's measurements: analysis/audit.md, audit.csv."""
    from ctcoupling.results import audit as audit_mod

    registry = audit_mod.load_registry(registry_path)
    records = []
    for exp in P.experiments(params):
        path = Path(run_file(exp.name, "eval.json"))
        if not path.is_file():
            raise UserError(f"{path}: no evaluation for experiment '{exp.name}'; run the pipeline first")
        record = json.loads(path.read_text()).get("fidelity")
        if record:
            records.append((exp, record))
    rows = audit_mod.audit_table(registry, audit_mod.collect(source, records), source, preset_deviations(registry))
    artifacts.write_text(AUDIT_MD, audit_mod.markdown(rows, f"{source}, registry {registry_path}"))
    artifacts.write_text(AUDIT_CSV, audit_mod.csv_text(rows))
    counts = {v: sum(r["verdict"] == v for r in rows) for v in audit_mod.VERDICTS}
    _say(f"audit: {len(rows)} published rows; " + ", ".join(f"{v}: {c}" for v, c in counts.items() if c))


def theory(params: dict, dataset: str, source: str, progress: bool = True, seed: int | None = None) -> None:
    """The GC paper's theory on one data set's trained runs: R~_t, transport costs, R(theta), Theorem 1
    (analysis/). With a `seed` of theory.seeds other than theory.seed: the same measurements on that
    seed's runs, seeded by it, and only their record (runs/theory/DATASET-sSEED.json, no Theorem 1),
    for the claims over seeds."""
    import torch
    from tqdm import tqdm

    from ctcoupling.results import figures
    from ctcoupling.measure import theory_runs
    from ctcoupling.train import training

    if dataset not in theory_datasets(params):
        raise UserError(f"{source}: '{dataset}' is not listed under theory.datasets "
                        f"(have: {', '.join(theory_datasets(params)) or 'none'})")
    spec = params["theory"]
    main = seed is None or seed == spec["seed"]
    if not main:
        if seed not in P.theory_seeds(params):
            raise UserError(f"{source}: --seed {seed} is not in theory.seeds ({P.theory_seeds(params)})")
        spec = spec | {"seed": seed}
    exps = P.theory_runs(params, dataset, spec["seed"])
    runs = {}
    for kind, e in exps.items():
        ckpt = load_checkpoint(run_file(e.name, "model.pt"))
        runs[kind] = {"model": training.load_model(ckpt), "encoder": training.load_encoder(ckpt)}
    config = exps["ic"].config
    kernel, ot_batch = config["objective"]["kernel"], config["train"]["batch"]
    x = torch.from_numpy(datasets.to_model_space(datasets.load_prepared(data_npz(dataset))["x_train"])).double()
    net = params["networks"][spec["denoiser"]["network"]]
    n_fit = len({"ic", "ot"} | set(exps)) * spec["denoiser"]["steps"]
    stats = theory_runs.encoder_stats(runs, x)
    with tqdm(total=n_fit, desc=f"theory {dataset}: denoisers", disable=not progress) as bar:
        disc = theory_runs.discrepancy(x, runs, stats, spec, kernel, ot_batch, net, bar)
    trans = theory_runs.transport(x, runs, stats, spec, ot_batch)
    r_theta = theory_runs.r_theta(x, runs, stats, spec, kernel)
    thm = theory_runs.theorem1(x, runs["ic"]["model"], spec, kernel) if P.is_2d(params, dataset) and main else []
    oracle, sct = P.continuous_runs(params, dataset, spec["seed"])
    cont = []
    if oracle is not None:  # sCT per coupling against its oracle's tangent (the oracle's model as f)
        sct_runs = {}
        for kind, e in sct.items():
            ckpt = load_checkpoint(run_file(e.name, "model.pt"))
            sct_runs[kind] = {"model": training.load_model(ckpt), "encoder": training.load_encoder(ckpt)}
        teacher = exact_teacher(params, oracle, datasets.load_prepared(data_npz(dataset)))
        oracle_model = training.load_model(load_checkpoint(run_file(oracle.name, "model.pt")))
        cont = theory_runs.continuous(x, sct_runs, oracle_model, teacher, spec, ot_batch)
    claims = theory_runs.claims(dataset, disc, trans, thm)
    r_values = {r["coupling"]: r["R_theta"] for r in r_theta}
    record = {"dataset": dataset, "seed": spec["seed"], "runs": {k: e.name for k, e in exps.items()}, "kernel": kernel,
              "claims": claims, "R_theta": r_values, "tables": {"discrepancy": disc, "transport": trans,
                                                                "r_theta": r_theta, "theorem1": thm,
                                                                "continuous": cont},
              "continuous_runs": {"oracle": oracle.name, **{k: e.name for k, e in sct.items()}} if oracle else {}}
    provenance = _provenance("theory", {"theory": spec, "denoiser_network": net},
                                      theory_inputs(params, dataset, spec["seed"]))
    held = sum(c["holds"] for c in claims)
    if not main:
        artifacts.write_json(theory_seed_file(dataset, seed), record | {"provenance": provenance})
        _say(f"theory {dataset} seed {seed}: {held}/{len(claims)} claims hold -> {theory_seed_file(dataset, seed)}")
        return
    outs = dict(zip(["json", *THEORY_TABLES, "fig2", "fig3", "sct_fig", "theorem1_csv", "theorem1_png"],
                    theory_outs(params, dataset)))
    for name in THEORY_TABLES:
        artifacts.write_text(outs[name], _csv(record["tables"][name]))
    dim = int(np.prod(x.shape[1:]))  # R~'s float64 floor is eps * d (evidence.underflow_floor)
    artifacts.write_bytes(outs["fig2"], figures.discrepancy_figure(disc, dataset, dim, spec["seed"]))
    artifacts.write_bytes(outs["fig3"], figures.transport_figure(trans, dataset, spec["seed"], spec["n"]))
    artifacts.write_bytes(outs["sct_fig"], figures.continuous_discrepancy_figure(cont, dataset, spec["seed"]))
    if thm:
        artifacts.write_text(outs["theorem1_csv"], _csv(thm))
        artifacts.write_bytes(outs["theorem1_png"], figures.theorem1_figure(thm, dataset, spec["seed"]))
    artifacts.write_json(outs["json"], record | {"provenance": provenance})
    _say(f"theory {dataset}: {held}/{len(claims)} claims hold; R(theta) {r_values}")


def _paper_figure(name: str, params: dict, runs: dict, points: dict, refs: dict, table, theory: dict) -> bytes:
    """VCT Fig. 1 over every seed of its IC and VC runs, with their evaluation's numbers (`table`: the
    results rows); the GC pairs figure of the lowest-seed GC run, quoting the theory stage's transport
    costs (`theory`: data set -> its record) where the theory measured that same run."""
    from ctcoupling.results import figures
    from ctcoupling.train import training

    if name == "vct_fig1":
        by_seed: dict[int, dict] = {}
        for e in P.experiments(params):
            for kind, ref in runs.items():
                if (e.dataset, e.objective, e.coupling) == (ref.dataset, ref.objective, ref.coupling):
                    by_seed.setdefault(e.seed, {})[kind] = e
        rows = []
        for seed, es in sorted((s, es) for s, es in by_seed.items() if len(es) == len(runs)):
            ev = {k: table[table.experiment == e.name].iloc[0] for k, e in es.items()}
            vc = es["VC"]
            rows.append({"seed": seed, "samples": {k: points[e.name] for k, e in es.items()},
                         "between_modes": {k: float(r["between_modes"]) for k, r in ev.items()},
                         "mode_accuracy": float(ev["VC"]["mode_accuracy"]),
                         "encoder": training.load_encoder(load_checkpoint(run_file(vc.name, "model.pt")),
                                                          vc.config["sample"]["use_ema"])})
        return figures.vct_fig1(datasets.to_model_space(refs[runs["VC"].dataset]), rows)
    gc = runs["GC"]
    model = training.load_model(load_checkpoint(run_file(gc.name, "model.pt")))
    record, costs, source = theory.get(gc.dataset), None, ""
    if record and record["runs"].get("gc") == gc.name:  # the run fig3 measured: quote its numbers
        costs = record["tables"]["transport"]
        source = (f"the theory stage's, {params['theory']['n']} Monte Carlo pairs of the training set each "
                  f"(= fig3_transport_{gc.dataset}.png, theory_{gc.dataset}_transport.csv)")
    x_train = datasets.to_model_space(datasets.load_prepared(data_npz(gc.dataset))["x_train"])
    return figures.gc_pairs(x_train, model, costs, source, f"{gc.name}, GC's generator-induced pairs")


def _curves_table(params: dict):
    """Every experiment's curve.csv as one long table (dataset, objective, coupling, seed, step, metrics)."""
    import pandas as pd

    frames = []
    for e in P.experiments(params):
        path = Path(run_file(e.name, "curve.csv"))
        if not path.is_file():
            raise UserError(f"{path}: no training curve for experiment '{e.name}'; run `ctcoupling curve` "
                            "(or the pipeline) first")
        frames.append(pd.read_csv(path).assign(dataset=e.dataset, objective=e.objective, coupling=e.coupling,
                                               seed=e.seed))
    table = pd.concat(frames, ignore_index=True)
    keys = ["dataset", "objective", "coupling", "seed", "step"]
    return table[keys + [c for c in table.columns if c not in keys]]


def _plot_data(params: dict, curves, theory: dict[str, dict]) -> None:
    """The CSVs of dvc.yaml's plots (pipeline.plot_specs), from the curves and the theory records."""
    from ctcoupling.results import dvc_plots as D

    for path, spec in plot_specs(params).items():
        name = Path(path).stem
        kind, _, ds = name.partition("_")
        if name == "gc_mu_sweep":
            table = D.mu_table(curves, params)
        elif kind == "curves":
            table = D.curves_table(curves, params, ds)
        elif kind == "discrepancy":
            table = D.discrepancy_table(theory[ds], spec["y"])
        else:
            table = D.transport_table(theory[ds], spec["y"])
        artifacts.write_text(path, table.to_csv(index=False, lineterminator="\n"))


def _curves_figure(params: dict, curves, dataset: str) -> bytes:
    """One data set's curves: the main objectives and couplings, those named as their kind (the sweeps
    and the ablations have figures of their own)."""
    from ctcoupling.results import evidence
    from ctcoupling.results import figures

    t = curves[curves.dataset == dataset]
    objectives = list(dict.fromkeys(t.objective))
    t = t[t.objective.isin([o for o in objectives if params["objectives"][o]["kind"] == o] or objectives)]
    main = [c for c in evidence.MAIN if c in set(t.coupling)] or sorted(set(t.coupling))
    cont = P.continuous_spec(params)
    oracle = (cont["objective"], cont["oracle"]) if cont and dataset in cont["datasets"] else None
    return figures.curves_figure(t, dataset, curve_metrics(t)[:3], main, oracle)


def curve_metrics(t) -> list[str]:
    """The curve table's metrics that hold values, in the order the figures show them."""
    return [m for m in ("fid", "kid", "w2", "energy", "between_modes") if m in t and t[m].notna().any()]


def report(params: dict, source: str) -> None:
    from ctcoupling.results import evidence
    from ctcoupling.results import figures
    from ctcoupling.results import runs as report_mod

    rows, points = [], {}
    for exp in P.experiments(params):
        path = Path(run_file(exp.name, "eval.json"))
        if not path.is_file():
            raise UserError(f"{path}: no evaluation for experiment '{exp.name}' of {source}; run the pipeline, "
                            "and if you changed `grid`, regenerate dvc.yaml with `ctcoupling dag`")
        rows.append(report_mod.read_eval(path))
        points[exp.name] = load_samples(run_file(exp.name, "samples.npz"))
    refs = {ds: datasets.point_reference(datasets.load_prepared(data_npz(ds)))[0] for ds in {e.dataset for e in P.experiments(params)}}
    out = Path(ANALYSIS_DIR)
    table = report_mod.results_table(rows)
    summary = report_mod.summary_table(table)
    artifacts.write_text(out / "results.csv", table.to_csv(index=False, lineterminator="\n"))
    artifacts.write_text(out / "results.md", report_mod.markdown(table, summary, source))
    artifacts.write_json(out / "metrics.json", report_mod.metrics_json(summary))
    theory_records, theory_seeds = [], {}
    for ds in theory_datasets(params):
        for seed in P.theory_seeds(params):
            main = seed == params["theory"]["seed"]
            path = Path(theory_outs(params, ds)[0] if main else theory_seed_file(ds, seed))
            if not path.is_file():
                raise UserError(f"{path}: no theory measurements for data set '{ds}'; run `ctcoupling theory "
                                f"--params {source} --dataset {ds}{'' if main else f' --seed {seed}'}` "
                                "(or the pipeline) first")
            theory_seeds.setdefault(ds, []).append(json.loads(path.read_text()))
        theory_records.append(theory_seeds[ds][0])
    curves = _curves_table(params)
    artifacts.write_text(out / "curves.csv", curves.to_csv(index=False, lineterminator="\n"))
    ev = evidence.design(params)
    dims = {ds: int(np.prod(ref.shape[1:])) for ds, ref in refs.items()}  # the theory's float64 floor
    artifacts.write_text(out / "claims.md", evidence.claims_markdown(table, curves, params["couplings"],
                                                                     theory_records, source, P.ablations(params),
                                                                     P.confounds(params), theory_seeds, ev, dims))
    artifacts.write_text(out / "verdicts.rst", evidence.verdicts_rst(table, curves, params["couplings"],
                                                                    P.ablations(params), theory_seeds, ev, dims))
    _plot_data(params, curves, dict(zip(theory_datasets(params), theory_records)))
    runs = figure_runs(params)
    for path in [p for p in report_outs(params) if p.endswith(".png")]:
        name = Path(path).stem
        if name.startswith("curves_"):
            artifacts.write_bytes(path, _curves_figure(params, curves, name[len("curves_"):]))
        elif name == "ablations":
            artifacts.write_bytes(path, figures.ablations_figure(
                curves, P.ablations(params), {ds: evidence.primary(table, ds) for ds in set(table.dataset)},
                evidence.describe_change))
        elif name == "gc_mu_sweep":
            (ds, obj), = P.sweeps(params)["mu"][:1]
            sweep = evidence.mu_sweep_table(curves, params["couplings"])
            sweep = sweep[(sweep.dataset == ds) & (sweep.objective == obj)]
            artifacts.write_bytes(path, figures.mu_sweep_figure(sweep, evidence.primary(table, ds)))
        elif name == "vc_kl_scale":
            (ds, obj), = P.sweeps(params)["kl"][:1]
            kls = P.kl_values(params["couplings"])
            kl = table[(table.dataset == ds) & (table.objective == obj) & table.coupling.isin(list(kls))]
            kl = kl[kl["mode_accuracy"].notna()].assign(kl_scale=lambda d: d.coupling.map(kls))
            configured = float(params["couplings"]["vc"]["kl_scale"]) if "vc" in params["couplings"] else None
            artifacts.write_bytes(path, figures.kl_scale_figure(kl, None, configured,
                                                                evidence.SEPARATED))
        elif name == "samples_2d":
            artifacts.write_bytes(path, report_mod.samples_figure(params, points, refs))
        elif name.startswith("samples_"):
            ds = name[len("samples_"):]
            artifacts.write_bytes(path, report_mod.image_grids_figure(params, ds, points, refs[ds]))
        elif name in runs:
            artifacts.write_bytes(path, _paper_figure(name, params, runs[name], points, refs, table,
                                                      dict(zip(theory_datasets(params), theory_records))))
    artifacts.write_json(out / "provenance.json", _provenance(
        "report", {"grid": params["grid"], "report": params["report"]},
        [run_file(e.name, "eval.json") for e in P.experiments(params)]))
    _say(f"report: {len(rows)} experiments -> {out}/")


def pilot(params: dict, source: str) -> None:
    """analysis/pilot.md: the pilot's rules (params `pilot`) applied to its runs that have finished."""
    import pandas as pd

    from ctcoupling.results import evidence
    from ctcoupling.results import pilot as pilot_mod
    from ctcoupling.results import runs as report_mod

    spec = params["pilot"]
    suite = P.load(spec["for"])
    ev = evidence.design(suite)
    rows, frames = [], []
    for e in P.experiments(params):
        ev_path, curve_path = Path(run_file(e.name, "eval.json")), Path(run_file(e.name, "curve.csv"))
        if ev_path.is_file() and curve_path.is_file():
            rows.append(report_mod.read_eval(ev_path))
            frames.append(pd.read_csv(curve_path).assign(dataset=e.dataset, objective=e.objective, coupling=e.coupling,
                                                         seed=e.seed))
    if not rows:
        raise UserError(f"{source}: no pilot run has finished; run `make pilot` (or the pipeline on {source}) first")
    results, curves = report_mod.results_table(rows), pd.concat(frames, ignore_index=True)
    exps = P.experiments(params)
    steps = {(e.dataset, e.objective): e.config["train"]["steps"] for e in exps}
    schedule = pilot_mod.choose_schedule(results, curves, spec["schedule"], steps, ev)
    knobs = pilot_mod.choose_knobs(results, spec["knobs"], schedule, params["couplings"], len(ev["pilot_seeds"]))
    counts = pilot_mod.seed_count(results, schedule, knobs, ev, spec["max_seeds"])
    seeds = pilot_mod.suite_seeds(counts, spec["max_seeds"])
    lines = pilot_mod.check(P.experiments(suite), exps, schedule, knobs, seeds, ev)
    artifacts.write_text(Path(ANALYSIS_DIR) / "pilot.md", pilot_mod.markdown(
        source, spec["for"], spec, ev, schedule, knobs, counts, seeds, lines))
    _say(f"pilot: {len(rows)} of {len(exps)} runs -> {ANALYSIS_DIR}/pilot.md")
