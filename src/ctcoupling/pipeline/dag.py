"""The DAG, once: artifact paths and stages, shared by the Snakefile and the generated dvc.yaml.

prepare(dataset) -> train(experiment) -> sample(experiment) -> evaluate(experiment) -> report,
train(experiment) -> curve(experiment) (the snapshots along training) -> report,
classifier(dataset) -> evaluate (digits FID/KID/IS/PR), theory(dataset) from the trained runs of a
data set -> report (the claims table), and audit over every evaluation (published numbers).
Both engines call the same `ctcoupling` commands on the same paths; `ctcoupling dag` writes
dvc.yaml from here, and a test checks that the committed dvc.yaml is current.
"""
from __future__ import annotations

import contextlib
import os

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ctcoupling.config import params as P
from ctcoupling.core.errors import UserError
from ctcoupling.train.training import TORCHRUN

DATA_DIR, RUNS_DIR, ANALYSIS_DIR = "data", "runs", "analysis"
CMD = "python -m ctcoupling"  # the Snakefile runs the very same command strings


def data_npz(ds: str) -> str:
    return f"{DATA_DIR}/{ds}.npz"


def data_manifest(ds: str) -> str:
    return f"{DATA_DIR}/{ds}.json"


@contextlib.contextmanager
def mtimes_kept(roots: tuple[str, ...] = (DATA_DIR, RUNS_DIR, ANALYSIS_DIR)):
    """Every file under `roots` keeps the modification time it had before the block. For `dvc commit`
    after a Snakemake run: DVC moves each output into its cache and puts a copy back, in its own order,
    which leaves inputs newer than the outputs made from them, and the next Snakemake run would redo
    every job downstream of them although nothing changed."""
    before = {p: p.stat().st_mtime_ns for root in roots for p in Path(root).rglob("*") if p.is_file()}
    yield
    for p, ns in before.items():
        if p.is_file():
            os.utime(p, ns=(ns, ns))


def run_file(exp: str, name: str) -> str:
    return f"{RUNS_DIR}/{exp}/{name}"


def classifier_file(ds: str) -> str:
    return f"{DATA_DIR}/{ds}_classifier.pt"


def classifier_record(ds: str) -> str:
    return f"{DATA_DIR}/{ds}_classifier.json"


REGISTRY = "params/published_fids.yaml"
AUDIT_MD, AUDIT_CSV = f"{ANALYSIS_DIR}/audit.md", f"{ANALYSIS_DIR}/audit.csv"
PILOT_MD = f"{ANALYSIS_DIR}/pilot.md"  # `ctcoupling pilot` on params/pilot.yaml (`make pilot`)
RESOLUTION_MD = f"{ANALYSIS_DIR}/oracle_resolution.md"  # params/oracle.yaml's confirmatory test (`make oracle`)
RESOLUTION_SCRIPT = "workflow/scripts/oracle_resolution.py"
# The training log, through DVCLive (ctcoupling.train.trainlog): its histories (a directory) and its summary, the
# train stage's metrics (`dvc exp show`, `dvc metrics diff`).
TRAIN_OUTS = ("model.pt", "snapshots.pt", "dvclive/plots", "train.json")
TRAIN_METRICS = ("dvclive/metrics.json",)
SAMPLE_OUTS = ("samples.npz", "samples.png", "sample.json")
EVALUATE_OUTS = ("eval.json",)
CURVE_OUTS = ("curve.csv", "curve.json")
REPORT_OUTS = ("results.csv", "results.md", "metrics.json", "provenance.json", "verdicts.rst")
PLOTS_DIR = f"{ANALYSIS_DIR}/plots"  # the data of dvc.yaml's plots (ctcoupling.results.dvc_plots)
# DVC's stock `linear` template colours by git revision and dashes the series, which leaves a plot of one
# revision in one colour; this one (Vega-Lite, DVC's anchors) colours the series and dashes the revisions.
PLOT_TEMPLATE = "workflow/report/dvc_series.json"
PLOT_TEMPLATE_LOGLOG = "workflow/report/dvc_series_loglog.json"  # t from 0.02 to 80, R~_t over decades


def figure_runs(params: dict) -> dict[str, dict[str, P.Experiment]]:
    """The runs the paper-figure reproductions draw from (lowest seed, first objective in the grid,
    the coupling named as its kind): VCT Fig. 1 needs IC and VC on the two-Gaussian set, the GC
    figure a GC run on a 2-D set."""
    first: dict[tuple, P.Experiment] = {}
    for e in P.experiments(params):
        key = (e.dataset, e.config["coupling"]["kind"])
        if e.coupling == key[1] and (key not in first or e.seed < first[key].seed):
            first[key] = e
    out = {}
    two = [ds for ds in P.dataset_names(params) if params["datasets"][ds]["source"] == "two_gaussians"]
    for ds in two:
        if (ds, "ic") in first and (ds, "vc") in first:
            out["vct_fig1"] = {"IC": first[(ds, "ic")], "VC": first[(ds, "vc")]}
            break
    for (ds, kind), e in first.items():
        if kind == "gc" and P.is_2d(params, ds):
            out["gc_pairs"] = {"GC": e}
            break
    return out


def report_outs(params: dict) -> list[str]:
    """Tables, one figure for the 2-D sets, one sample-grid figure per image set, the paper figures."""
    used = {e.dataset for e in P.experiments(params)}
    figures = ["samples_2d.png"] if any(P.is_2d(params, ds) for ds in used) else []
    figures += [f"samples_{ds}.png" for ds in P.dataset_names(params) if ds in used and not P.is_2d(params, ds)]
    figures += [f"{name}.png" for name in figure_runs(params)]
    figures += [f"curves_{ds}.png" for ds in P.dataset_names(params) if ds in used]
    found = P.sweeps(params)
    figures += ["gc_mu_sweep.png"] * bool(found["mu"]) + ["vc_kl_scale.png"] * bool(found["kl"])
    figures += ["ablations.png"] * bool(P.ablations(params))
    return ([f"{ANALYSIS_DIR}/{n}" for n in REPORT_OUTS + ("curves.csv", "claims.md") + tuple(figures)] +
            list(plot_specs(params)))


def plot_specs(params: dict) -> dict[str, dict]:
    """dvc.yaml's top-level `plots:` (path -> DVC plot properties): each data set's training curves (all
    couplings in one plot), GC's mu sweep, R~_t and c(t) per coupling for each theory data set. The report
    stage writes the files (ctcoupling.results.dvc_plots), with exactly these columns."""
    from ctcoupling.results import dvc_plots as D

    used = {e.dataset for e in P.experiments(params)}
    out = {}
    for ds in [ds for ds in P.dataset_names(params) if ds in used]:
        metric = D.curve_metric(params, ds)
        out[f"{PLOTS_DIR}/curves_{ds}.csv"] = {
            "title": f"{ds}: {metric} vs training step (seed mean)", "x": "step",
            "y": [col for _, _, col in D.curve_series(params, ds)], "x_label": "training step", "y_label": metric}
    mu = D.mu_series(params)
    if mu:
        ds, obj, series = mu
        metric = D.curve_metric(params, ds)
        out[f"{PLOTS_DIR}/gc_mu_sweep.csv"] = {
            "title": f"GC's mu sweep, {ds} / {obj}: {metric} vs step (seed mean; mu = 0 is IC)", "x": "step",
            "y": [col for _, col in series], "x_label": "training step", "y_label": metric}
    for ds in theory_datasets(params):
        out[f"{PLOTS_DIR}/discrepancy_{ds}.csv"] = {
            "title": f"{ds}: R~_t vs t (denoiser estimator, GC paper Fig. 2)", "x": "t", "template": PLOT_TEMPLATE_LOGLOG,
            "y": D.theory_series(params, ds, "discrepancy"), "x_label": "t", "y_label": "R~_t"}
        out[f"{PLOTS_DIR}/transport_{ds}.csv"] = {
            "title": f"{ds}: transport cost c(t) (GC paper Fig. 3; IC, OT, VC: constant)", "x": "t",
            "template": PLOT_TEMPLATE_LOGLOG,
            "y": D.theory_series(params, ds, "transport"), "x_label": "t", "y_label": "c(t)"}
    return {path: {"template": PLOT_TEMPLATE} | spec for path, spec in out.items()}


ACROSS = "All data sets"  # the report's category of what compares data sets
# analysis/ file -> (caption in workflow/report/, topic: the report's subcategory). Exact names first,
# then the per-data-set names by prefix (the theory rule's names hold the `{dataset}` wildcard).
REPORTED = {"results.csv": ("results.rst", "Results"), "results.md": ("results.rst", "Results"),
            "curves.csv": ("curves_table.rst", "Training curves"), "claims.md": ("claims.rst", "Claims"),
            "audit.md": ("audit.rst", "Audit"), "audit.csv": ("audit.rst", "Audit"),
            "samples_2d.png": ("samples_2d.rst", "Samples"), "vct_fig1.png": ("vct_fig1.rst", "Samples"),
            "gc_pairs.png": ("gc_pairs.rst", "Samples"), "ablations.png": ("ablations.rst", "Sweeps and ablations"),
            "gc_mu_sweep.png": ("gc_mu_sweep.rst", "Sweeps and ablations"),
            "vc_kl_scale.png": ("vc_kl_scale.rst", "Sweeps and ablations"),
            "plots/gc_mu_sweep.csv": ("plot_data.rst", "Sweeps and ablations")}
REPORTED_PREFIX = {"samples_": ("samples_images.rst", "Samples"), "curves_": ("curves.rst", "Training curves"),
                   "plots/curves_": ("plot_data.rst", "Training curves"),
                   "plots/discrepancy_": ("plot_data.rst", "Theory"), "plots/transport_": ("plot_data.rst", "Theory"),
                   "fig2_discrepancy_": ("fig2_discrepancy.rst", "Theory"),
                   "fig3_transport_": ("fig3_transport.rst", "Theory"), "theorem1_": ("theorem1.rst", "Theory"),
                   "sct_discrepancy_": ("sct_discrepancy.rst", "Theory"),
                   "theory_": ("theory_tables.rst", "Theory")}


def report_entry(params: dict, path: str) -> dict | None:
    """How `snakemake --report` shows an analysis/ file: its caption (workflow/report/), category (the data
    set, or ACROSS) and subcategory (the topic); None for the records that are no figure or table
    (provenance, metrics.json, the theory JSON, verdicts.rst, which the captions include)."""
    name = path[len(ANALYSIS_DIR) + 1:]
    if name in REPORTED:
        caption, topic = REPORTED[name]
        ds = _figure_dataset(params, name)
    else:
        prefix = next((p for p in REPORTED_PREFIX if name.startswith(p) and not name.endswith(".json")), None)
        if prefix is None:
            return None
        caption, topic = REPORTED_PREFIX[prefix]
        ds = name[len(prefix):].rsplit(".", 1)[0]
        if ds.startswith("{"):  # a wildcard pattern: Snakemake expands the category per job
            ds = "{dataset}"
        elif prefix == "theory_":
            ds = next(d for d in theory_datasets(params) if ds == d or ds.startswith(d + "_"))
    return {"caption": caption, "category": ds or ACROSS, "subcategory": topic}


def _figure_dataset(params: dict, name: str) -> str | None:
    """The data set a figure of one data set draws (the paper figures', the sweeps'); None: several."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    runs = figure_runs(params).get(stem)
    if runs:
        return next(iter(runs.values())).dataset
    found = P.sweeps(params)
    sweep = {"gc_mu_sweep": found["mu"], "vc_kl_scale": found["kl"]}.get(stem)
    return sweep[0][0] if sweep else None


def classifier_datasets(params: dict) -> list[str]:
    """Data sets some experiment scores with its own classifier's features (evaluate.fidelity.features)."""
    used = {e.dataset for e in P.experiments(params) if e.config["evaluate"]["fidelity"]["features"] == "classifier"}
    return [ds for ds in P.dataset_names(params) if ds in used]


def evaluate_inputs(params: dict, exp: P.Experiment) -> list[str]:
    """What an evaluation reads: samples and data; the classifier; the model when it streams samples."""
    fid = exp.config["evaluate"]["fidelity"]
    out = [run_file(exp.name, "samples.npz"), data_npz(exp.dataset)]
    if fid["features"] == "classifier":
        out.append(classifier_file(exp.dataset))
    if (fid["features"] != "none" and fid["stream"]) or posterior_measured(params, exp):
        out.append(run_file(exp.name, "model.pt"))
    return out


def posterior_measured(params: dict, exp: P.Experiment) -> bool:
    """Whether evaluate measures the VC posterior's separation of the modes (two-Gaussian set)."""
    return params["datasets"][exp.dataset]["source"] == "two_gaussians" and "encoder_network" in exp.config


def curve_inputs(params: dict, exp: P.Experiment) -> list[str]:
    """What the curve stage reads: the snapshots and the final weights, the data, the classifier for
    image metrics."""
    out = [run_file(exp.name, "snapshots.pt"), run_file(exp.name, "model.pt"), data_npz(exp.dataset)]
    if not P.is_2d(params, exp.dataset) and exp.config["evaluate"]["fidelity"]["features"] == "classifier":
        out.append(classifier_file(exp.dataset))
    return out


def theory_datasets(params: dict) -> list[str]:
    return list(params["theory"]["datasets"]) if params.get("theory") else []


THEORY_TABLES = ("discrepancy", "transport", "r_theta", "continuous")


def theory_files(ds: str, two_d: bool) -> list[str]:
    """The theory stage of one data set: its record, CSV tables and figures (Theorem 1: 2-D sets).
    `ds` may be a Snakemake wildcard pattern."""
    names = [f"theory_{ds}.json"] + [f"theory_{ds}_{t}.csv" for t in THEORY_TABLES]
    names += [f"fig2_discrepancy_{ds}.png", f"fig3_transport_{ds}.png", f"sct_discrepancy_{ds}.png"]
    if two_d:
        names += [f"theory_{ds}_theorem1.csv", f"theorem1_{ds}.png"]
    return [f"{ANALYSIS_DIR}/{n}" for n in names]


def theory_outs(params: dict, ds: str) -> list[str]:
    return theory_files(ds, P.is_2d(params, ds))


def theory_seed_file(ds: str, seed) -> str:
    """The record of the theory measured on the runs of a seed other than `theory.seed`."""
    return f"runs/theory/{ds}-s{seed}.json"


def theory_extra(params: dict) -> list[tuple[str, int]]:
    """(data set, seed) of the theory stages beyond `theory.seed`'s (the claims over seeds)."""
    return [(ds, s) for ds in theory_datasets(params) for s in P.theory_seeds(params)[1:]]


def theory_inputs(params: dict, ds: str, seed: int | None = None) -> list[str]:
    """What the theory stage reads: the data set and the checkpoints of the runs it measures."""
    runs = P.theory_runs(params, ds, seed)
    oracle, sct = P.continuous_runs(params, ds, params["theory"]["seed"] if seed is None else seed)
    extra = ([run_file(oracle.name, "model.pt")] + [run_file(sct[k].name, "model.pt") for k in sorted(sct)]
             if oracle else [])
    return [data_npz(ds)] + [run_file(runs[k].name, "model.pt") for k in sorted(runs)] + extra


def theory_deps(params: dict, ds: str, seed: int | None = None) -> list[str]:
    return theory_inputs(params, ds, seed) + code_deps("theory")


def report_deps(params: dict) -> list[str]:
    exps = P.experiments(params)
    models = sorted({run_file(e.name, "model.pt") for runs in figure_runs(params).values() for e in runs.values()})
    return ([run_file(e.name, "eval.json") for e in exps] + [data_npz(ds) for ds in P.dataset_names(params)] +
            [run_file(e.name, "samples.npz") for e in exps] + [run_file(e.name, "curve.csv") for e in exps] + models +
            [theory_outs(params, ds)[0] for ds in theory_datasets(params)] +
            [theory_seed_file(ds, s) for ds, s in theory_extra(params)] + code_deps("report"))


SRC = "src/ctcoupling"
# The modules whose math each stage runs (core/artifacts.py: how it writes them, provenance included;
# core/portable.py: which CPU kernels compute them): a change to one re-runs exactly the stages that
# use it, and each stage records their sha256.
_MODEL = ("model/kernels.py", "model/networks.py", "model/edm2.py", "model/trigflow.py")
_OT = ("core/pairing.py", "core/assignment.py")  # batch-OT: the coupling, the re-paired sampler, the theory
_SCORE = ("measure/distances.py", "measure/fidelity.py", "data/classifier.py", "model/sampling.py")
CODE = {stage: ("core/artifacts.py", "core/portable.py") + modules for stage, modules in {
    "prepare": ("data/datasets.py", "data/imagesets.py"),
    "train": _MODEL + _OT + ("model/pretrained.py", "train/objectives.py", "train/couplings.py", "train/optim.py",
                             "train/randomness.py", "train/training.py", "train/trainlog.py"),
    "sample": _MODEL + _OT + ("model/sampling.py",),
    "classifier": ("data/classifier.py",),
    "evaluate": _MODEL + _OT + _SCORE,
    "curve": _MODEL + _OT + _SCORE + ("results/curves.py",),
    "audit": ("results/audit.py", "config/official.py"),
    "theory": _MODEL + _OT + ("measure/theory.py", "measure/theory_runs.py", "results/figures.py"),
    "report": ("results/runs.py", "results/figures.py", "results/evidence.py", "results/curves.py",
               "results/stats.py", "results/dvc_plots.py"),
}.items()}


def code_deps(stage: str) -> list[str]:
    return [f"{SRC}/{m}" for m in CODE[stage]]


def audit_presets(registry: str = REGISTRY) -> list[str]:
    """The params files the registry's rows are reproduced by (those present): the audit reads how each
    differs from its official run, so a change to one re-runs the audit."""
    try:
        rows = (yaml.safe_load(Path(registry).read_text()) or {}).get("entries") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return []  # the audit stage itself reports the registry's problem in one line
    paths = {(r.get("reproduce") or {}).get("params") for r in rows if isinstance(r, dict)}
    return sorted(p for p in paths if isinstance(p, str) and Path(p).is_file())


def run_summary(claims_md: str | None, seconds: float, analysis_dir: str, figures: list[str],
                study: str | None = None) -> str:
    """What a finished pipeline run prints last (Snakefile `onsuccess`): where its results are, the time it
    took, and the opening table of claims.md (the primary claims' answers). `claims_md` None: the params
    write no claims (a grid without the evidence protocol's pairs). `study`: the one file a study's params
    make (study_output), named instead of the suite's results."""
    m, s = divmod(round(seconds), 60)
    done = f"ctcoupling: done in {m // 60}:{m % 60:02d}:{s:02d} (h:mm:ss)."
    if study:
        return f"{done} Results in {study}.\n"
    lines = [f"{done} Results in {analysis_dir}/: "
             "claims.md (every verdict), audit.md (against the published numbers), results.md (per run), "
             f"figures {', '.join(figures) or '(none)'}."]
    if claims_md:
        start = claims_md.find("## The answers")
        table = [ln for ln in claims_md[start:].split("\n\n## ", 1)[0].splitlines() if ln.startswith("|")] \
            if start >= 0 else []
        if table:
            lines += [f"The answers ({analysis_dir}/claims.md):", *table]
    return "\n".join(lines) + "\n"


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    outs: list[str]
    params: list[str]
    uncached: list[str] = field(default_factory=list)  # committed to git (analysis/), not DVC's cache
    metrics: list[str] = field(default_factory=list)  # cached outputs DVC reads as metrics


def checkpoint_inputs(config: dict) -> list[str]:
    """Checkpoints a training run starts from: train.init (ECT) and GC's frozen predictor."""
    out = [config["train"]["init"]] if config["train"]["init"] else []
    if config["coupling"].get("predictor") == "checkpoint":
        out.append(config["coupling"]["checkpoint"])
    return out


def trainer_inputs(trained_by: dict[str, str], name: str) -> list[str]:
    """A run trained as another (P.trained_by) copies that run's training: its outputs are inputs."""
    trainer = trained_by.get(name)
    return [run_file(trainer, n) for n in TRAIN_OUTS] if trainer else []


def train_cmd(config: dict) -> str:
    """The launcher of a train job: the plain command, or torchrun with train.gpus processes."""
    gpus = config["train"]["gpus"]
    return CMD if gpus == 1 else TORCHRUN.format(gpus=gpus)


GPU_STAGES = ("train", "sample", "evaluate", "curve")
JOB_DEFAULTS = {"mem_mb": 4000, "runtime": 60}


def job_threads(params: dict, processes: int = 1) -> int:
    """CPUs of one job: `threads` per process (a train job runs train.gpus processes)."""
    return params["threads"] * processes


def job_resources(params: dict, stage: str, processes: int = 1) -> dict:
    """What one job asks a cluster for, from params' `resources` (Snakemake resources, which the SLURM
    executor turns into sbatch's --mem, --time, --gpus, --partition, --account). `processes`: a train
    job's train.gpus, its GPUs where the jobs run on GPUs."""
    spec = params.get("resources", {})
    jobs = spec.get("jobs", {})
    out = {**JOB_DEFAULTS, **jobs.get("default", {}), **jobs.get(stage, {})}
    if spec.get("gpu") and stage in GPU_STAGES:
        out["gpu"] = processes
    for key in ("partition", "account"):
        if spec.get(key):
            out[f"slurm_{key}"] = spec[key]
    return out


def stages(params: dict, params_path: str) -> list[Stage]:
    out = []
    for ds in P.dataset_names(params):
        out.append(Stage(f"prepare-{ds}", f"{CMD} prepare --params {params_path} --dataset {ds}",
                         deps=code_deps("prepare"), outs=[data_npz(ds), data_manifest(ds)],
                         params=P.stage_param_keys(params, "prepare", ds)))
    for ds in classifier_datasets(params):
        out.append(Stage(f"classifier-{ds}", f"{CMD} classifier --params {params_path} --dataset {ds}",
                         deps=[data_npz(ds)] + code_deps("classifier"), outs=[classifier_file(ds), classifier_record(ds)],
                         params=P.stage_param_keys(params, "classifier", ds)))
    evals = []
    trained_by = P.trained_by(params)
    for e in P.experiments(params):
        x = e.name
        init = checkpoint_inputs(e.config) + trainer_inputs(trained_by, x)
        out.append(Stage(f"train-{x}", f"{train_cmd(e.config)} train --params {params_path} --experiment {x}",
                         deps=[data_npz(e.dataset)] + init + code_deps("train"), outs=[run_file(x, n) for n in TRAIN_OUTS],
                         metrics=[run_file(x, n) for n in TRAIN_METRICS],
                         params=P.stage_param_keys(params, "train", e)))
        out.append(Stage(f"sample-{x}", f"{CMD} sample --params {params_path} --experiment {x}",
                         deps=[run_file(x, "model.pt")] + code_deps("sample"), outs=[run_file(x, n) for n in SAMPLE_OUTS],
                         params=P.stage_param_keys(params, "sample", e)))
        out.append(Stage(f"evaluate-{x}", f"{CMD} evaluate --params {params_path} --experiment {x}",
                         deps=evaluate_inputs(params, e) + code_deps("evaluate"),
                         outs=[run_file(x, n) for n in EVALUATE_OUTS],
                         params=P.stage_param_keys(params, "evaluate", e)))
        out.append(Stage(f"curve-{x}", f"{CMD} curve --params {params_path} --experiment {x}",
                         deps=curve_inputs(params, e) + code_deps("curve"), outs=[run_file(x, n) for n in CURVE_OUTS],
                         params=P.stage_param_keys(params, "curve", e)))
        evals.append(run_file(x, "eval.json"))
    for ds in theory_datasets(params):
        out.append(Stage(f"theory-{ds}", f"{CMD} theory --params {params_path} --dataset {ds}",
                         deps=theory_deps(params, ds), outs=[], uncached=theory_outs(params, ds),
                         params=P.stage_param_keys(params, "theory", ds)))
    for ds, s in theory_extra(params):
        out.append(Stage(f"theory-{ds}-s{s}", f"{CMD} theory --params {params_path} --dataset {ds} --seed {s}",
                         deps=theory_deps(params, ds, s), outs=[theory_seed_file(ds, s)],
                         params=P.stage_param_keys(params, "theory", ds)))
    out.append(Stage("audit", f"{CMD} audit --params {params_path}", deps=[REGISTRY] + audit_presets() + evals + code_deps("audit"),
                     outs=[], uncached=[AUDIT_MD, AUDIT_CSV], params=P.stage_param_keys(params, "audit", "")))
    out.append(Stage("report", f"{CMD} report --params {params_path}", deps=report_deps(params),
                     outs=[], uncached=report_outs(params), params=P.stage_param_keys(params, "report", "")))
    return out


def dvc_yaml(params: dict, params_path: str) -> str:
    """dvc.yaml text for a params file: explicit stages, each with exactly the params keys it reads."""
    doc = {}
    for s in stages(params, params_path):
        entry = {"cmd": s.cmd}
        if s.deps:
            entry["deps"] = s.deps
        entry["params"] = [{params_path: s.params}]
        if s.outs:
            entry["outs"] = s.outs
        if s.metrics:
            entry["metrics"] = s.metrics
        if s.uncached:
            metrics = [o for o in s.uncached if o.endswith("metrics.json")]
            # persist: DVC leaves the committed files in place until the stage replaces them (atomically),
            # so a stage that fails (e.g. on a stale dvc.yaml) does not delete analysis/ from the checkout
            entry["outs"] = [{o: {"cache": False, "persist": True}} for o in s.uncached if o not in metrics]
            entry["metrics"] = [{o: {"cache": False, "persist": True}} for o in metrics]
        doc[s.name] = entry
    plots = [{path: spec} for path, spec in plot_specs(params).items()]
    header = (f"# Generated by `ctcoupling dag --params {params_path}` from the params grid: do not edit.\n"
              "# Regenerate after changing `grid`, `datasets` or `overrides`; a test checks it is current.\n")
    return header + yaml.safe_dump({"stages": doc, "plots": plots}, sort_keys=False, width=120)


def pilot_deps(params: dict) -> list[str]:
    """What the pilot's analysis reads: every pilot run's evaluation and curve, and the suite's params."""
    if "pilot" not in params:
        return []
    return ([run_file(e.name, n) for e in P.experiments(params) for n in ("eval.json", "curve.csv")]
            + [params["pilot"]["for"]] + code_deps("report") + [f"{SRC}/results/pilot.py"])


def resolution_deps(params: dict) -> list[str]:
    """What the confirmatory oracle test reads (params with a `resolution` section, params/oracle.yaml): every
    run's final model, the data set's prepared file, and the code that samples and scores them."""
    if "resolution" not in params:
        return []
    return ([run_file(e.name, "model.pt") for e in P.experiments(params)]
            + [data_npz(params["resolution"]["dataset"])] + code_deps("evaluate") + [RESOLUTION_SCRIPT])


def data_params_file(params: dict, source: str) -> str:
    """The params file that prepares the data and trains the classifiers in a run of `source`: its own, or
    for a study (a `pilot` or `resolution` section) the suite's it serves (`for`). A study re-uses the
    suite's data/ files as they are: re-made from the study's file, they would be bitwise the same but
    newer than the suite's runs, and Snakemake's next run of the suite would re-train every run on them.
    A study whose data or classifier settings differ from its suite's is refused (it would overwrite them)."""
    kind = study_kind(params)
    if kind is None:
        return source
    study = params[kind]
    suite = P.load(study["for"])
    for ds in sorted({e.dataset for e in P.experiments(params)}):
        if params["datasets"][ds] != suite["datasets"].get(ds):
            raise UserError(f"{source}: datasets.{ds} differs from {study['for']}'s, whose data/ files this study "
                              f"shares: copy {study['for']}'s datasets.{ds}")
    if params.get("classifier") != suite.get("classifier"):
        raise UserError(f"{source}: classifier differs from {study['for']}'s, whose data/ files this study "
                          f"shares: copy {study['for']}'s classifier")
    return study["for"]


STUDIES = {"pilot": PILOT_MD, "resolution": RESOLUTION_MD}  # a study's params section -> the one file it makes


def study_kind(params: dict) -> str | None:
    """The study section of a study's params (`pilot`, `resolution`), None for a suite's."""
    return next((k for k in STUDIES if k in params), None)


def study_output(params: dict) -> str | None:
    """The one analysis file a study's params make (a pilot's or a confirmatory test's), None for a suite."""
    kind = study_kind(params)
    return STUDIES[kind] if kind else None


def all_outputs(params: dict) -> list[str]:
    """Every artifact the pipeline produces, for `rule all` and the engine-equivalence test. A pilot's
    params (a `pilot` section) make its runs and analysis/pilot.md only: no theory, audit or report; a
    confirmatory test's (`resolution`) its runs' training and analysis/oracle_resolution.md only."""
    if "pilot" in params:
        return [run_file(e.name, n) for e in P.experiments(params) for n in ("eval.json", "curve.json")] + [PILOT_MD]
    if "resolution" in params:
        return [run_file(e.name, "model.pt") for e in P.experiments(params)] + [RESOLUTION_MD]
    outs = []
    for s in stages(params, "-"):
        outs += s.outs + s.metrics + s.uncached
    return outs
