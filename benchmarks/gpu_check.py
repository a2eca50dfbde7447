"""GPU acceptance check for a short loan (issue 24): one call of at most 8 minutes on one GPU that
says whether the suite trains, samples and scores there, and how fast. Writes one markdown table.

    python benchmarks/gpu_check.py [--budget-s 450] [--out FILE]     # make gpu-check
    python benchmarks/gpu_check.py --cpu --tiny --out FILE            # the same code paths, in seconds

Sections, in this order (the checks first, so that a tight budget drops throughput rows, not them):
1. device: the GPU's name, memory and compute capability, torch and CUDA versions.
2. loss check: 50 steps of `params/cifar10_gc_net.yaml`'s GC experiment (the preset's network, Lion,
   EMA and fp32; its per-GPU batch, train.batch / train.gpus) on uniform random images through
   `training.train`; passes when every loss is finite and the mean of the last 10 losses is below
   the mean of the first 10.
3. sample + FID: 5,000 images streamed from that run's EMA model (the preset's `sample` settings, its
   largest `evaluate.fidelity.steps`, batch and FID protocol) into torch-fidelity's Inception and
   the FID statistics, as the evaluate stage streams them (`fidelity.SampleStream`). The reference is
   5,000 random images, whose features are extracted first in a warm-up call (timed apart, and
   it loads Inception and initialises its kernels), so the row's img/s is generation + Inception
   features + FID of the generated images alone. The Inception weights are CTCOUPLING_INCEPTION_WEIGHTS;
   where it is unset (a loan has no internet either) a random-weight Inception of the same
   architecture, cost and layout (the tests' one, `random_inception`), and the row says so. The
   FID value is meaningless either way (50 steps, random data): the row is about time.
4. train: for each paper network, CIFAR-10 DDPM++ (`cifar10_ict.yaml`, 55.7M) and EDM2-S
   (`imagenet64_ecm_vc.yaml`, 280.2M), and each coupling kind (IC, OT, VC, GC, VC+GC), 30 steps in
   fp32 (TF32 matmuls, as the presets train) and 30 in bf16 + channels-last + torch.compile, at the
   preset's per-GPU batch (train.batch / train.gpus: what one of its GPUs runs). A coupling the
   preset does not define is set on its experiment, and the table says so: GC as the GC paper's
   Table 1 (mu 0.5, EMA predictor), VC+GC as the preset's VC (encoder, kl_scale, the overrides of
   its VC cells) plus that GC, OT as kind ot.

How a train row measures (`throughput`): one `training.Run` (the training loop's own step and
draws) runs 30 steps; the device is synchronised after step 10 and after step 30, and img/s is
batch x 20 / the time of steps 11-30, so compile, autotuning, allocator growth and the first
steps' set-up are out of the rate. They are in the "first steps" column (Run construction and
steps 1-10, compile included), which is what compile costs a real job once. FLOPs are counted with
`FlopCounterMode` on step 2 of the fp32 row (eager; matmuls and convolutions of the coupling's
passes, the student's forward and backward, the teacher's forward: benchmarks/train_throughput.py),
and the bf16 row reuses that count (the same arithmetic in another precision). TFLOP/s = FLOPs per
step / seconds per step; MFU = that / the GPU's dense peak in the row's precision (PEAK_TFLOPS:
TF32 for fp32). Each compiled row starts from torch._dynamo.reset() (so no row falls back to eager
at dynamo's cache limit; inductor's on-disk FX graph cache stays warm, so a later row of the same
network may compile faster than a job's first), and a row whose timed steps recompiled says so.

Budget: every section and row prints its time and the time so far. Before each, an estimate of its
cost (the last like row's time; 120 s, or 1.5x the slowest compiled row so far, for a network's first
compiled row) is checked against --budget-s (default 450 s, leaving 30 s of 8 minutes for start-up
and writing); what would not fit is skipped with a note in its row, so the table is always written.
An error in one row (e.g. out of memory) is noted in that row and the rest go on. Exit status 1
when the loss check fails or a row errs.

`--cpu --tiny` (tests/test_gpu_check.py, so this cannot rot): the same sections on the CPU with tiny
networks (16 channels, two levels, one block) on 16 x 16 images, batch 4, 4 steps (img/s over the last
2), the loss check's 50 steps at batch 8, 32 streamed images (2 batches) against 8 reference ones, and
always the random-weight Inception (on 2 cores it scores ~6 images a second); torch.compile is skipped
on the CPU (the bf16 rows are bf16 + channels-last, and say so).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from unittest import mock

STARTED = time.perf_counter()  # the budget counts the imports too

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import PEAK_TFLOPS, bench_config, count_flops, peak, synthetic, tensors  # noqa: E402

from ctcoupling.pipeline import describe  # noqa: E402
from ctcoupling.measure import fidelity
from ctcoupling.model import sampling
from ctcoupling.train import training
from ctcoupling.config import params as P  # noqa: E402
from ctcoupling.cli import enable_fast_cuda  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"CIFAR-10 DDPM++": "params/cifar10_ict.yaml", "EDM2-S": "params/imagenet64_ecm_vc.yaml"}
LOSS_PRESET = "params/cifar10_gc_net.yaml"
GC = {"mu": 0.5, "predictor": "ema"}  # the GC paper's Table 1 (cifar10_gc_net.yaml)
TINY_NETWORKS = {"songunet": {"model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [8]},
                 "edm2": {"model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [8]}}
TINY_SIDE = 16  # --tiny trains and samples 16 x 16 images (the data sets' channels)
SIZES = {  # steps timed after warmup; batch None: the preset's per-GPU batch
    "full": dict(steps=30, warmup=10, loss_steps=50, batch=None, loss_batch=None, sample_n=5000, sample_batch=None,
                 reference_n=5000, eager_s=30.0, compile_s=120.0, loss_s=60.0, sample_s=60.0),
    "tiny": dict(steps=2, warmup=2, loss_steps=50, batch=4, loss_batch=8, sample_n=32, sample_batch=16,
                 reference_n=8, eager_s=10.0, compile_s=10.0, loss_s=10.0, sample_s=30.0),
}
MODES = ("fp32", "bf16+CL+compile")
COLUMNS = ("section", "network", "coupling", "mode", "batch", "img/s", "TFLOP/s", "MFU", "first steps s", "peak GiB",
           "notes")


class Budget:
    """Wall time since start against the budget; each section's and row's time printed as it ends."""

    def __init__(self, seconds: float, start: float):
        self.seconds, self.start = seconds, start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, estimate: float) -> bool:
        return self.elapsed() + estimate <= self.seconds

    def skip_note(self, estimate: float) -> str:
        return (f"skipped: budget ({self.seconds - self.elapsed():.0f} s of {self.seconds:.0f} s left, "
                f"needs ~{estimate:.0f} s)")

    def say(self, what: str, seconds: float) -> None:
        print(f"[{what}] {seconds:.1f} s (elapsed {self.elapsed():.1f} s of {self.seconds:.0f} s)", flush=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def device_info(device: str) -> str:
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(device)
        return (f"{p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}, "
                f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads, torch {torch.__version__}"


def tiny(config: dict, shape: tuple[int, ...]) -> tuple[dict, tuple[int, ...]]:
    """The experiment with its networks (and VC's encoder) shrunk to TINY_NETWORKS of their kind, and
    the data shape to TINY_SIDE x TINY_SIDE."""
    out = dict(config)
    for key in ("network", "encoder_network"):
        if key in out:
            out[key] = {**out[key], **TINY_NETWORKS[out[key]["kind"]]}
    return out, (shape[0], TINY_SIDE, TINY_SIDE)


def coupling_experiment(params: dict, source: str, kind: str) -> tuple[P.Experiment, str]:
    """The preset's first grid cell with coupling kind `kind`, and how it was come by: the preset's own
    coupling of that kind (in its grid or only defined), or one derived here (module docstring)."""
    cell = params["grid"][0]
    named = [n for n, c in params["couplings"].items() if c["kind"] == kind]
    couplings, overrides = dict(params["couplings"]), dict(params.get("overrides", {}))
    if named:
        name = named[0]
        note = "" if any(name in b["coupling"] for b in params["grid"]) else f"coupling '{name}' of the preset, not in its grid"
    else:
        name = kind
        vc_names = [n for n, c in params["couplings"].items() if c["kind"] == "vc"]
        if kind == "ot":
            couplings[name], note = {"kind": "ot"}, "derived: kind ot"
        elif kind == "gc":
            couplings[name], note = {"kind": "gc", **GC}, "derived: GC mu 0.5, EMA predictor"
        elif kind == "vcgc" and vc_names:
            couplings[name] = {**params["couplings"][vc_names[0]], "kind": "vcgc", **GC}
            for n, o in overrides.items():  # VC+GC cells take the overrides of the VC cells
                if vc_names[0] in o["match"].get("coupling", []):
                    overrides[n] = {**o, "match": {**o["match"], "coupling": [*o["match"]["coupling"], name]}}
            note = f"derived: the preset's VC ({vc_names[0]}, its overrides too) + GC mu 0.5, EMA predictor"
        else:
            raise ValueError(f"{source}: no coupling of kind {kind} to derive one from")
    derived = {**params, "couplings": couplings, "overrides": overrides,
               "grid": [{"dataset": cell["dataset"][:1], "objective": cell["objective"][:1], "coupling": [name],
                         "seed": cell["seed"][:1]}]}
    return P.experiments(P.validate(derived, f"{source} ({kind})"))[0], note


def throughput(config: dict, shape: tuple[int, ...], device: str, steps: int, warmup: int, count: bool) -> dict:
    """Module docstring, "How a train row measures"."""
    compiled = config["train"].get("compile", False)
    if compiled:
        import torch._dynamo as dynamo
        from torch._dynamo.utils import counters

        dynamo.reset()
        graphs = lambda: counters["stats"]["unique_graphs"] - made  # noqa: E731 - this row's (counters add up)
        made = counters["stats"]["unique_graphs"]
    x, y = synthetic(shape, config, config["train"]["batch"])
    t0 = time.perf_counter()
    run = training.Run(config, shape, torch.device(device))
    data, labels = tensors(x, y, device)
    it = run.iterate(data, 0, steps + warmup, labels)
    next(it)
    flops = count_flops(it) if count else None  # step 2 (the first may differ: an EMA copy, a compile)
    for _ in range(2, warmup):
        next(it)
    sync(device)
    t1 = time.perf_counter()
    before = graphs() if compiled else 0
    for _, loss, *_ in it:
        pass
    sync(device)
    t2 = time.perf_counter()
    notes = [f"{sum(p.numel() for p in run.trainable) / 1e6:.2f}M trained parameters"]
    if not math.isfinite(loss.item()):
        notes.append(f"non-finite loss {loss.item()}")
    if compiled:
        notes.append(f"{graphs()} compiled graph(s)" + (", recompiled in the timed steps" if graphs() > before else "")
                     + (": NOT compiled" if not graphs() else ""))
    del run, it
    return {"seconds_per_step": (t2 - t1) / steps, "first_s": t1 - t0, "flops": flops, "notes": notes}


def train_rows(budget: Budget, sizes: dict, device: str, small: bool) -> list[dict]:
    experiments = {}  # (network, kind) -> (config, shape, note)
    for label, path in NETWORKS.items():
        params = P.load(ROOT / path)
        for kind in P.MAIN:
            exp, note = coupling_experiment(params, path, kind)
            config, shape = exp.config, describe.data_shape(params, exp.dataset)
            if small:
                config, shape = tiny(config, shape)
            experiments[label, kind] = (config, shape, note, Path(path).stem)
    rows, flops, last = [], {}, {}  # last: (network, mode) -> seconds of its latest row
    for kind in P.MAIN:  # IC on both networks first: a tight budget cuts the other couplings
        for label in NETWORKS:
            config, shape, note, stem = experiments[label, kind]
            per_gpu = sizes["batch"] or config["train"]["batch"] // config["train"]["gpus"]
            for mode in MODES:
                compile_ = mode != "fp32" and device.startswith("cuda")
                options = ({"precision": "fp32", "channels_last": False, "compile": False} if mode == "fp32" else
                           {"precision": "bf16", "channels_last": True, "compile": compile_})
                row = {"section": "train", "network": f"{label} ({stem})", "coupling": P.LABEL[kind],
                       "mode": mode if compile_ or mode == "fp32" else "bf16+CL (compile skipped on CPU)",
                       "batch": per_gpu, "notes": [note] if note else []}
                rows.append(row)
                compiled_s = [s for (_, m), s in last.items() if m == mode]
                estimate = last.get((label, mode)) or (max(sizes["compile_s"], 1.5 * max(compiled_s, default=0))
                                                       if compile_ else sizes["eager_s"])
                if not budget.fits(estimate):
                    row["notes"].insert(0, budget.skip_note(estimate))
                    continue
                started = time.perf_counter()
                free(device)
                try:
                    r = throughput(bench_config(config, per_gpu, options), shape, device, sizes["steps"],
                                   sizes["warmup"], count=mode == "fp32")
                except Exception as e:  # noqa: BLE001 - one row's failure (out of memory) must not lose the table
                    traceback.print_exc()
                    row["error"] = True
                    row["notes"].insert(0, f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
                    continue
                finally:
                    last[label, mode] = time.perf_counter() - started
                if r["flops"] is not None:
                    flops[label, kind] = r["flops"]
                f = flops.get((label, kind))
                top = peak(device, options["precision"], None)
                row |= {"img/s": per_gpu / r["seconds_per_step"], "first steps s": r["first_s"],
                        "TFLOP/s": f / r["seconds_per_step"] / 1e12 if f else None,
                        "MFU": f / r["seconds_per_step"] / (top * 1e12) if f and top else None,
                        "peak GiB": peak_gib(device)}
                row["notes"] += r["notes"]
                budget.say(f"train {label} {P.LABEL[kind]} {row['mode']}: {row['img/s']:.1f} img/s"
                           + (f", {row['TFLOP/s']:.2f} TFLOP/s" if row["TFLOP/s"] else "")
                           + (f", MFU {100 * row['MFU']:.1f}%" if row["MFU"] else ""), last[label, mode])
    return rows


def loss_check(budget: Budget, sizes: dict, device: str, small: bool) -> tuple[dict, dict | None, P.Experiment]:
    """Section 2 (module docstring): the row, and the checkpoint for section 3 (None when not run)."""
    params = P.load(ROOT / LOSS_PRESET)
    exp = next((e for e in P.experiments(params) if e.config["coupling"]["kind"] == "gc"), P.experiments(params)[0])
    config, shape = exp.config, describe.data_shape(params, exp.dataset)
    if small:
        config, shape = tiny(config, shape)
    per_gpu = sizes["loss_batch"] or config["train"]["batch"] // config["train"]["gpus"]
    n = sizes["loss_steps"]
    row = {"section": "loss check", "network": f"CIFAR-10 GC net ({Path(LOSS_PRESET).stem})",
           "coupling": P.LABEL[exp.config["coupling"]["kind"]], "mode": "fp32", "batch": per_gpu, "notes": []}
    if not budget.fits(sizes["loss_s"]):
        row["notes"].append(budget.skip_note(sizes["loss_s"]))
        return row, None, exp
    config = P.deep_merge(bench_config(config, per_gpu, {}), {"train": {"steps": n, "log_every": 1}})
    x, y = synthetic(shape, config, per_gpu)
    free(device)
    sync(device)
    t0 = time.perf_counter()
    try:
        ckpt, log, _ = training.train(config, x, progress=False, device=device, y_train=y)
    except Exception as e:  # noqa: BLE001 - a divergence is the check's FAIL, not a crash
        row |= {"error": True, "notes": [f"FAIL: {type(e).__name__}: {e}"]}
        return row, None, exp
    sync(device)
    seconds = time.perf_counter() - t0
    losses = np.array([r["loss"] for r in log])
    k = min(10, n // 2)
    first, final = losses[:k].mean(), losses[-k:].mean()
    ok = bool(len(losses) == n and np.isfinite(losses).all() and final < first)
    row |= {"img/s": per_gpu * n / seconds, "peak GiB": peak_gib(device), "error": not ok}
    row["notes"] = [f"{'PASS' if ok else 'FAIL'}: {n} steps on random images, loss "
                    f"{'finite' if np.isfinite(losses).all() else 'NOT finite'}, mean of steps 1-{k} {first:.4g} -> "
                    f"of steps {n - k + 1}-{n} {final:.4g} ({'falling' if final < first else 'NOT falling'}); "
                    "img/s over all steps, first included"]
    budget.say(f"loss check: {row['notes'][0]}", seconds)
    return row, ckpt, exp


def random_inception(root: Path) -> tuple[Path, str]:
    """(path, sha256) of a randomly initialised Inception-v3 weights file in exactly the layout torch-fidelity's
    FeatureExtractorInceptionV3 loads: its own state dict, built without loading (an empty file, the strict
    load skipped), with BatchNorm statistics set from one random batch so the features are O(1). The same
    cost as the real network; its features, and so every metric on them, are meaningless."""
    import hashlib

    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    torch.save({}, root / "empty.pth")
    with mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None), \
            torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = tf_inception.FeatureExtractorInceptionV3(fidelity.INCEPTION, ["2048"],
                                                       feature_extractor_weights_path=str(root / "empty.pth"))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 1.0  # running statistics := this batch's
        with torch.no_grad():
            net.train()(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    path = root / fidelity.INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def sample_fid(budget: Budget, sizes: dict, device: str, small: bool, ckpt: dict | None, exp: P.Experiment) -> dict:
    """Section 3 (module docstring)."""
    spec, sample = exp.config["evaluate"]["fidelity"], exp.config["sample"]
    n, batch, nfe = sizes["sample_n"], sizes["sample_batch"] or spec["batch"], max(spec["steps"])
    row = {"section": "sample + FID", "network": "the loss check's EMA model", "coupling": P.LABEL[exp.coupling],
           "mode": f"fp32, {nfe} step(s), protocol {spec['protocol']}", "batch": batch, "notes": []}
    if ckpt is None:
        row["notes"].append("skipped: no model (the loss check did not run to the end)")
        return row
    if not budget.fits(sizes["sample_s"]):
        row["notes"].append(budget.skip_note(sizes["sample_s"]))
        return row
    model = training.load_model(ckpt, sample["use_ema"])
    encoder = training.load_encoder(ckpt, sample["use_ema"])
    shape = tuple(ckpt["data_shape"])

    def generate(b: int):
        m = min(batch, n - b * batch)
        return sampling.generate(model, m, shape, m, 1000 + b, sample["t_mid"][:nfe - 1], False, device, encoder,
                                 sample["ot_pairing"], sample.get("labels", "balanced"), label_offset=b * batch)

    reference = np.random.default_rng(2).integers(0, 256, (sizes["reference_n"], *shape), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        real = os.environ.get(fidelity.INCEPTION_ENV) and not small
        weights, sha = (None, None) if real else random_inception(Path(tmp))
        kw = dict(extractor=fidelity.INCEPTION, weights_path=weights, cache_dir=Path(tmp) / "cache",
                  reference_key="random", metrics=["fid"], batch=batch, device=device, weights_sha256=sha)
        free(device)
        t0 = time.perf_counter()
        try:  # warm-up: Inception loaded and its kernels initialised; the reference features cached
            fidelity.compute(reference[:min(8 if small else batch, len(reference))], reference, **kw)
            t1 = time.perf_counter()
            fid = fidelity.compute(fidelity.SampleStream(generate, n, batch), reference, **kw)["fid"]
        except Exception as e:  # noqa: BLE001 - noted in the row; the table is still written
            traceback.print_exc()
            row |= {"error": True, "notes": [f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"]}
            return row
        t2 = time.perf_counter()
    what = (f"Inception from {fidelity.INCEPTION_ENV}" if real else
            f"random-weight Inception ({'--tiny' if small else fidelity.INCEPTION_ENV + ' unset'}): same cost, "
            "meaningless values")
    row |= {"img/s": n / (t2 - t1), "first steps s": t1 - t0, "peak GiB": peak_gib(device)}
    row["notes"] = [f"{n} images generated and scored in {t2 - t1:.1f} s; {what}; FID {fid:.4g} against "
                    f"{len(reference)} random images (timing only); first steps = warm-up with the reference's features"]
    budget.say(f"sample + FID: {n / (t2 - t1):.1f} img/s", t2 - t0)
    return row


def cell(row: dict, column: str) -> str:
    v = row.get(column)
    if column == "notes":
        return "; ".join(v).replace("|", "/")
    if v is None:
        return ""
    if column == "MFU":
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.3g}" if column == "TFLOP/s" else f"{v:.1f}" if column != "peak GiB" else f"{v:.2f}"
    return str(v)


def table(rows: list[dict], header: list[str]) -> str:
    lines = [*header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, c) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (torch.compile skipped)")
    ap.add_argument("--tiny", action="store_true", help="tiny networks, batches and sample counts (the test's mode)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="skip what would end past this many seconds")
    default_out = Path(os.environ["OUT"]) / "gpu_check.md" if os.environ.get("OUT") else ROOT / "runs" / "gpu_check.md"
    ap.add_argument("--out", type=Path, default=default_out, help=f"the markdown table (default: {default_out})")
    a = ap.parse_args(argv)
    budget = Budget(a.budget_s, STARTED)
    if not a.cpu and not torch.cuda.is_available():
        print("error: no CUDA device: run with --cpu (and --tiny for the quick check)", file=sys.stderr)
        return 2
    device, sizes = "cpu" if a.cpu else "cuda", SIZES["tiny" if a.tiny else "full"]
    enable_fast_cuda()
    info = device_info(device)
    print(f"device: {info}", flush=True)
    peaks = ", ".join(f"{g} {p} {v:g}" for (g, p), v in PEAK_TFLOPS.items())
    rows = []
    t0 = time.perf_counter()
    row, ckpt, exp = loss_check(budget, sizes, device, a.tiny)
    rows.append(row)
    rows.append(sample_fid(budget, sizes, device, a.tiny, ckpt, exp))
    del ckpt
    rows += train_rows(budget, sizes, device, a.tiny)
    budget.say("all sections", time.perf_counter() - t0)
    header = [f"# GPU check, {datetime.date.today().isoformat()}", "",
              f"- device: {info}",
              f"- `python benchmarks/gpu_check.py{' --cpu' if a.cpu else ''}{' --tiny' if a.tiny else ''} "
              f"--budget-s {a.budget_s:g}`: {budget.elapsed():.0f} s in all",
              f"- train rows: img/s over steps {sizes['warmup'] + 1}-{sizes['warmup'] + sizes['steps']} of one run; "
              f"first steps s = Run construction + steps 1-{sizes['warmup']} (compile included); MFU against the "
              f"dense peak of the row's precision in TFLOP/s ({peaks}); fp32 rows: fp32 weights, TF32 matmuls on a GPU "
              "(as the presets train)"]
    if a.tiny:
        header.append(f"- --tiny: every network shrunk ({TINY_NETWORKS}) on {TINY_SIDE} x {TINY_SIDE} images: "
                      "the rows check the code paths, their numbers say nothing of the hardware")
    text = table(rows, header)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(text, flush=True)
    print(f"wrote {a.out}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
