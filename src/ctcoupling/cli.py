"""`ctcoupling`: one subcommand per pipeline stage, plus `dag` (write dvc.yaml) and `validate`.

Thin on purpose: parse arguments, load and validate params, fix threads and determinism, call
the stage. Bad input ends as one `error:` line and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctcoupling.core.errors import UserError

DEFAULT_PARAMS = "params/default.yaml"


def enable_fast_cuda() -> None:
    """On GPUs: TF32 matmuls and convolutions; determinism is asked for but only warned about, since
    some CUDA kernels have no deterministic version (bitwise reproducibility is promised on CPU).

    On the CPU nothing is switched: the CPU kernels the suite runs are deterministic at a fixed thread
    count (the bitwise tests re-run stages and compare hashes), and `use_deterministic_algorithms`
    imports torch's compiler stack, 3.5 s of every job's start here (half of a small job's time)."""
    import os

    import torch

    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def _setup(params_path: str, torch_needed: bool = False) -> dict:
    """Load params and fix the thread count (BLAS always, torch when the stage uses it)."""
    from threadpoolctl import threadpool_limits

    from ctcoupling.config import params as P

    params = P.load(params_path)
    _check_dvc_stage(params, params_path)
    threadpool_limits(params["threads"])
    if torch_needed:
        _setup_torch(params)
    return params


def _setup_torch(params: dict) -> None:
    import torch

    torch.set_num_threads(params["threads"])
    enable_fast_cuda()


def _check_dvc_stage(params: dict, params_path: str) -> None:
    """Under DVC (`dvc repro`, `dvc exp run`; DVC sets DVC_STAGE and DVC_ROOT), refuse to run when dvc.yaml
    is not the one `ctcoupling dag` writes for these params: a change to the grid's shape (`grid`,
    `datasets`, `overrides`, `train.gpus`, e.g. by `dvc exp run -S`) adds or removes stages, which DVC
    cannot see in a dvc.yaml written before it."""
    import os

    from ctcoupling.pipeline import dag

    root = os.environ.get("DVC_ROOT")
    if not os.environ.get("DVC_STAGE") or not root:
        return
    path = Path(root, "dvc.yaml")
    if path.is_file() and path.read_text() != dag.dvc_yaml(params, params_path):
        raise UserError(f"dvc.yaml is out of date with {params_path} (a change to `grid`, `datasets`, `overrides` "
                        "or `train.gpus` changes the stages): run `ctcoupling dag --params "
                        f"{params_path}` and commit dvc.yaml, then `dvc repro` / `dvc exp run` again (with "
                        "`dvc exp run -S`, set such a key in the params file first)")


def _device(name: str) -> str:
    """'auto' is this rank's GPU when there is one (LOCAL_RANK under torchrun), else the CPU."""
    import os

    import torch

    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is visible; use --device cpu")
        return name
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def _cmd_prepare(a):
    from ctcoupling.pipeline import stages

    stages.prepare(_setup(a.params), a.dataset)


def _cmd_train(a):
    from ctcoupling.pipeline import stages

    stages.train(_setup(a.params, torch_needed=True), a.experiment, a.params, progress=not a.quiet,
                 resume=a.resume, device=_device(a.device), tensorboard=a.tensorboard)


def _cmd_sample(a):
    from ctcoupling.pipeline import stages

    stages.sample(_setup(a.params, torch_needed=True), a.experiment, a.params, progress=not a.quiet,
                  device=_device(a.device))


def _cmd_evaluate(a):
    import os

    from ctcoupling.config import params as P
    from ctcoupling.pipeline import stages
    from ctcoupling.core.assignment import _LIGHT_POT

    params = _setup(a.params)
    if stages.evaluate_uses_torch(params, P.experiment(params, a.experiment, a.params)):
        _setup_torch(params)
        device = _device(a.device)
    else:  # points only (W2, energy): no network runs, and POT is kept from importing torch (1 s of the job)
        os.environ.update(_LIGHT_POT)
        device = "cpu"
    stages.evaluate(params, a.experiment, a.params, device=device)


def _cmd_curve(a):
    from ctcoupling.pipeline import stages

    stages.curve(_setup(a.params, torch_needed=True), a.experiment, a.params, device=_device(a.device))


def _cmd_classifier(a):
    from ctcoupling.pipeline import stages

    stages.classifier(_setup(a.params, torch_needed=True), a.dataset, a.params)


def _cmd_audit(a):
    from ctcoupling.pipeline import stages

    stages.audit(_setup(a.params), a.params, a.registry)


def _cmd_report(a):
    from ctcoupling.pipeline import stages

    stages.report(_setup(a.params), a.params)


def _cmd_pilot(a):
    from ctcoupling.pipeline import stages

    params = _setup(a.params)
    if "pilot" not in params:
        raise UserError(f"{a.params}: no `pilot` section; the pilot's params are params/pilot.yaml")
    stages.pilot(params, a.params)


def _cmd_theory(a):
    from ctcoupling.pipeline import stages

    stages.theory(_setup(a.params, torch_needed=True), a.dataset, a.params, progress=not a.quiet, seed=a.seed)


def _cmd_dag(a):
    from ctcoupling.core import artifacts
    from ctcoupling.pipeline import dag
    from ctcoupling.config import params as P

    text = dag.dvc_yaml(P.load(a.params), a.params)
    out = Path(a.output)
    if a.check:
        if not out.is_file() or out.read_text() != text:
            raise UserError(f"{out} is out of date with {a.params}; run `ctcoupling dag --params {a.params}`")
        print(f"{out} is current")
        return
    artifacts.write_text(out, text)
    print(f"wrote {out}")


def _cmd_describe(a):
    import json

    from ctcoupling.pipeline import describe

    rows = describe.describe(_setup(a.params, torch_needed=True), a.experiment)
    print(json.dumps(rows, indent=2) if a.json else describe.text(rows, a.params))


def _cmd_validate(a):
    from ctcoupling.config import params as P

    params = P.load(a.params)
    exps = P.experiments(params)
    print(f"{a.params}: valid; {len(params['datasets'])} data sets, {len(exps)} experiments")
    if a.list:
        for e in exps:
            print(e.name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctcoupling", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Run `ctcoupling COMMAND --help` for a command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_, experiment=False, dataset=False, quiet=False):
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("--params", default=DEFAULT_PARAMS, help=f"params YAML file (default: {DEFAULT_PARAMS})")
        if experiment:
            s.add_argument("--experiment", required=True, help="experiment name DATASET-OBJECTIVE-COUPLING-sSEED "
                                                               "(`ctcoupling validate --list` shows them)")
        if dataset:
            s.add_argument("--dataset", required=True, help="data set name under `datasets` in the params")
        if quiet:
            s.add_argument("--quiet", action="store_true", help="no progress bar")
            s.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:N")
        s.set_defaults(func=func)
        return s

    add("prepare", _cmd_prepare, "prepare one data set: data/DATASET.npz and its manifest data/DATASET.json",
        dataset=True)
    t = add("train", _cmd_train, "train one experiment: runs/EXP/model.pt, snapshots.pt, dvclive/ (the log, "
            "through DVCLive), train.json (multi-GPU: torchrun --nproc_per_node N -m ctcoupling train ...)",
            experiment=True, quiet=True)
    t.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="also log each row to TensorBoard under DIR/EXP as training goes (default: the "
                        "CTCOUPLING_TENSORBOARD environment variable; off without it); never a pipeline output")
    t.add_argument("--resume", action="store_true",
                   help="continue from runs/EXP/train_state.pt (written every train.checkpoint_every steps)")
    add("sample", _cmd_sample, "draw samples from a trained experiment: runs/EXP/samples.npz, sample.json",
        experiment=True, quiet=True)
    add("classifier", _cmd_classifier, "train a data set's feature classifier for FID/KID/IS/PR: "
        "data/DATASET_classifier.pt and .json (held-out accuracy)", dataset=True)
    e = add("evaluate", _cmd_evaluate, "score an experiment's samples: W2 (and energy distance on 2-D sets) "
            "against held-out data, FID/KID/IS/PR through torch-fidelity: runs/EXP/eval.json", experiment=True)
    e.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:N")
    c = add("curve", _cmd_curve, "the training curve of an experiment: every snapshot of runs/EXP/snapshots.pt "
            "sampled and scored (W2 on 2-D sets, FID/KID on classifier features): runs/EXP/curve.csv, curve.json",
            experiment=True)
    c.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:N")
    au = add("audit", _cmd_audit, "every published number against this params file's measurements, with a "
             "verdict: analysis/audit.md and analysis/audit.csv")
    au.add_argument("--registry", default="params/published_fids.yaml", help="published numbers (default: %(default)s)")
    th = add("theory", _cmd_theory, "the GC paper's theory on a data set's trained runs: R~_t per coupling "
             "(exact and estimated), transport costs, R(theta), Theorem 1: analysis/theory_DATASET*",
             dataset=True)
    th.add_argument("--quiet", action="store_true", help="no progress bar")
    th.add_argument("--seed", type=int, default=None,
                    help="measure the runs of this seed of theory.seeds instead of theory.seed's: only the record "
                         "runs/theory/DATASET-sSEED.json, for the claims over seeds (default: theory.seed)")
    add("report", _cmd_report, "tables and figures over all experiments: analysis/")
    add("pilot", _cmd_pilot, "apply the pilot's rules (params/pilot.yaml's `pilot`) to its finished runs: "
        "analysis/pilot.md")
    d = add("dag", _cmd_dag, "write dvc.yaml for a params file (the same DAG as the Snakefile)")
    d.add_argument("--output", default="dvc.yaml", help="where to write (default: dvc.yaml)")
    d.add_argument("--check", action="store_true", help="fail if the file is not what would be written")
    ds = add("describe", _cmd_describe, "what each experiment will train: parameter counts, schedule, settings")
    ds.add_argument("--experiment", help="only this experiment (default: all)")
    ds.add_argument("--json", action="store_true", help="machine-readable output")
    v = add("validate", _cmd_validate, "check a params file against the schema and expand its grid")
    v.add_argument("--list", action="store_true", help="print the experiment names")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; finished artifacts are intact, partial ones were discarded", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
