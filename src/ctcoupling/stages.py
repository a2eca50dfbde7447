"""The pipeline stages: read inputs, call the pure functions, write artifacts atomically.

One function per `ctcoupling` subcommand. Nothing here computes anything of interest; it wires
files to the math in data/training/sampling/metrics/report and records provenance.
"""
from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

from . import artifacts, data
from . import params as P
from .errors import UserError
from .pipeline import ANALYSIS_DIR, checkpoint_inputs, data_manifest, data_npz, figure_runs, report_outs, run_file


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare(params: dict, dataset: str) -> None:
    if dataset not in params["datasets"]:
        raise UserError(f"no data set '{dataset}' under datasets (have: {', '.join(params['datasets'])})")
    spec = params["datasets"][dataset]
    arrays = data.build(spec)
    out = Path(data_npz(dataset))
    blob = artifacts.npz_bytes(arrays)
    inputs = data.source_files(spec)
    manifest = {
        "name": dataset,
        "source": spec["source"],
        "file": str(out),
        "sha256": artifacts.sha256_bytes(blob),
        "arrays": data.describe(arrays),
        "splits": {"train": len(arrays["x_train"]), "test": len(arrays["x_test"])},
        "provenance": artifacts.provenance("prepare", {f"datasets.{dataset}": spec}, inputs),
    }
    artifacts.write_bytes(out, blob)
    artifacts.write_json(data_manifest(dataset), manifest)
    _say(f"prepared {dataset}: {manifest['splits']} -> {out}")


def train(params: dict, name: str, source: str, progress: bool = True, resume: bool = False,
          device: str = "cpu") -> None:
    from . import training

    exp = P.experiment(params, name, source)
    d = data.load_prepared(data_npz(exp.dataset))
    state_path = Path(run_file(name, "train_state.pt"))
    t0 = time.perf_counter()
    ckpt, log = training.train(exp.config, data.to_model_space(d["x_train"]), state_path, resume, progress, device)
    wall_s = time.perf_counter() - t0
    rank, _ = training.distributed()
    if rank != 0:
        return
    ckpt["data_dtype"] = str(d["x_train"].dtype)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(log[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(log)
    artifacts.write_torch(run_file(name, "model.pt"), ckpt)
    artifacts.write_text(run_file(name, "train_log.csv"), buf.getvalue())
    inputs = [data_npz(exp.dataset)] + checkpoint_inputs(exp.config)
    artifacts.write_json(run_file(name, "train.json"), {
        "experiment": name,
        "final_loss": log[-1]["loss"],
        "parameters": sum(v.numel() for k, v in ckpt["model"].items() if not k.endswith("resample_filter")),
        "provenance": artifacts.provenance("train", {"experiment": exp.config, "overrides": list(exp.overrides),
                                                     "threads": params["threads"]}, inputs),
    })
    state_path.unlink(missing_ok=True)  # the run is complete; its final weights are in model.pt
    steps = exp.config["train"]["steps"]
    _say(f"trained {name}: {steps} steps in {wall_s:.1f} s ({steps / wall_s:.1f} it/s), final loss {log[-1]['loss']:.4g}")


def load_checkpoint(path: str) -> dict:
    import torch

    if not Path(path).is_file():
        raise UserError(f"{path}: checkpoint not found; run `ctcoupling train` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: unreadable checkpoint ({type(e).__name__}); train again") from None


def sample(params: dict, name: str, source: str, progress: bool = True, device: str = "cpu") -> None:
    from . import report as report_mod
    from . import sampling, training

    exp = P.experiment(params, name, source)
    spec = exp.config["sample"]
    ckpt = load_checkpoint(run_file(name, "model.pt"))
    model = training.load_model(ckpt, spec["use_ema"])
    encoder = training.load_encoder(ckpt, spec["use_ema"])  # VC: later steps draw noise from its posterior
    x = sampling.generate(model, spec["n"], tuple(ckpt["data_shape"]), spec["batch"],
                          exp.seed + spec["seed_offset"], spec["t_mid"], progress, device, encoder).numpy()
    if ckpt["data_dtype"] == "uint8":
        x = data.to_uint8(x)
    artifacts.write_npz(run_file(name, "samples.npz"), {"x": x})
    artifacts.write_bytes(run_file(name, "samples.png"), report_mod.preview_png(x, name))
    artifacts.write_json(run_file(name, "sample.json"), {
        "experiment": name, "n": len(x), "nfe": spec["steps"], "t_mid": spec["t_mid"],
        "provenance": artifacts.provenance("sample", {"sample": spec}, [run_file(name, "model.pt")]),
    })
    _say(f"sampled {name}: {len(x)} samples, {spec['steps']} step(s)")


def load_samples(path: str) -> np.ndarray:
    if not Path(path).is_file():
        raise UserError(f"{path}: samples not found; run `ctcoupling sample` first")
    with np.load(path, allow_pickle=False) as z:
        return z["x"]


def evaluate(params: dict, name: str, source: str) -> None:
    from . import metrics

    exp = P.experiment(params, name, source)
    spec = exp.config["evaluate"]
    x = data.to_model_space(load_samples(run_file(name, "samples.npz")))
    ref = data.to_model_space(data.load_prepared(data_npz(exp.dataset))["x_test"])
    n = min(spec["n"], len(x), len(ref))
    result = {
        "experiment": name, "dataset": exp.dataset, "objective": exp.objective, "coupling": exp.coupling,
        "seed": exp.seed, "nfe": exp.config["sample"]["steps"], "n": n,
        "metrics": {"w2": metrics.w2_exact(x[:n], ref[:n])} | (
            {"between_modes": metrics.between_modes(x)} if params["datasets"][exp.dataset]["source"] == "two_gaussians"
            else {}),
        "provenance": artifacts.provenance("evaluate", {"evaluate": spec},
                                           [run_file(name, "samples.npz"), data_npz(exp.dataset)]),
    }
    artifacts.write_json(run_file(name, "eval.json"), result)
    _say(f"evaluated {name}: W2 = {result['metrics']['w2']:.4f} on {n} points")


def _paper_figure(name: str, runs: dict, points: dict, refs: dict) -> bytes:
    from . import figures, training

    if name == "vct_fig1":
        vc = runs["VC"]
        encoder = training.load_encoder(load_checkpoint(run_file(vc.name, "model.pt")))
        return figures.vct_fig1(data.to_model_space(refs[vc.dataset]),
                                {k: points[e.name] for k, e in runs.items()}, encoder)
    gc = runs["GC"]
    model = training.load_model(load_checkpoint(run_file(gc.name, "model.pt")))
    return figures.gc_pairs(data.to_model_space(refs[gc.dataset]), model)


def report(params: dict, source: str) -> None:
    from . import report as report_mod

    rows, points = [], {}
    for exp in P.experiments(params):
        path = Path(run_file(exp.name, "eval.json"))
        if not path.is_file():
            raise UserError(f"{path}: no evaluation for experiment '{exp.name}' of {source}; run the pipeline, "
                            "and if you changed `grid`, regenerate dvc.yaml with `ctcoupling dag`")
        rows.append(report_mod.read_eval(path))
        points[exp.name] = load_samples(run_file(exp.name, "samples.npz"))
    refs = {ds: data.load_prepared(data_npz(ds))["x_test"] for ds in {e.dataset for e in P.experiments(params)}}
    out = Path(ANALYSIS_DIR)
    table = report_mod.results_table(rows)
    summary = report_mod.summary_table(table)
    artifacts.write_text(out / "results.csv", table.to_csv(index=False, lineterminator="\n"))
    artifacts.write_text(out / "results.md", report_mod.markdown(table, summary, source))
    artifacts.write_json(out / "metrics.json", report_mod.metrics_json(summary))
    runs = figure_runs(params)
    for path in report_outs(params):
        name = Path(path).stem
        if name == "samples_2d":
            artifacts.write_bytes(path, report_mod.samples_figure(params, points, refs))
        elif name.startswith("samples_"):
            ds = name[len("samples_"):]
            artifacts.write_bytes(path, report_mod.image_grids_figure(params, ds, points, refs[ds]))
        elif name in runs:
            artifacts.write_bytes(path, _paper_figure(name, runs[name], points, refs))
    artifacts.write_json(out / "provenance.json", artifacts.provenance(
        "report", {"grid": params["grid"], "report": params["report"]},
        [run_file(e.name, "eval.json") for e in P.experiments(params)]))
    _say(f"report: {len(rows)} experiments -> {out}/")
