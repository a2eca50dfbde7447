"""`ctcoupling describe`: what a params file will train, before any GPU hour is spent."""
from __future__ import annotations

import torch

from ctcoupling.model import networks
from ctcoupling.train import objectives
from ctcoupling.config import official as O
from ctcoupling.config import params as P
from ctcoupling.pipeline import dag as L

_IMAGE_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28)}


def data_shape(params: dict, dataset: str) -> tuple[int, ...]:
    """Per-sample shape of a data set from its params spec alone (no data needed)."""
    from ctcoupling.data import imagesets

    spec = params["datasets"][dataset]
    if P.is_2d(params, dataset):
        return (2,)
    if spec["source"] in imagesets.SOURCES:  # resolution (and channels) from the spec
        return imagesets.sample_shape(spec)
    if spec["source"] == "npz":
        return tuple(spec["shape"])
    return _IMAGE_SHAPES[spec["source"]]


def _NO_TEACHER(x_t, t):
    """sCD-exact's teacher stands in for the data's exact velocity, which describe never evaluates."""
    raise RuntimeError("describe does not train")


def describe(params: dict, only: str | None = None) -> list[dict]:
    rows = []
    for e in P.experiments(params):
        if only and e.name != only:
            continue
        shape = data_shape(params, e.dataset)
        with torch.device("meta"):  # counts without allocating 50M-parameter weights
            net = networks.build(e.config["network"], shape)
            enc = networks.build(e.config["encoder_network"], shape, out_mult=2) if "encoder_network" in e.config else None
        obj = objectives.build(e.config["objective"], e.config["train"]["steps"], _NO_TEACHER)
        run = params.get("official", {}).get("runs", {}).get(e.coupling)
        why = params.get("official", {}).get("why", {})
        rows.append({
            "experiment": e.name,
            "data_shape": list(shape),
            "network": e.config["train"]["network"],
            "network_parameters": networks.count_params(net),
            "encoder": e.config["coupling"].get("encoder"),
            "encoder_parameters": networks.count_params(enc) if enc is not None else 0,
            "schedule": obj.summary(),
            "overrides": list(e.overrides),
            "ignored": list(e.ignored),
            "official": run,
            "official_source": O.RUNS[run]["source"] if run else None,
            "deviations": O.deviations(e.config, run, why) if run else None,
            "train_job": train_job(params, e.config),
            "settings": e.config,
        })
    if only and not rows:
        P.experiment(params, only)  # raises with the list of names
    return rows


def train_job(params: dict, config: dict) -> dict:
    """What the experiment's train job runs on: its processes (train.gpus), GPUs, CPUs, memory, time."""
    gpus = config["train"]["gpus"]
    res = L.job_resources(params, "train", gpus)
    return {"processes": gpus, "gpus": res.get("gpu", 0), "batch_per_process": config["train"]["batch"] // gpus,
            "launch": L.train_cmd(config), "threads": L.job_threads(params, gpus), "mem_mb": res["mem_mb"],
            "runtime_min": res["runtime"]}


def _job(j: dict) -> str:
    where = f"{j['gpus']} GPU(s)" if j["gpus"] else "CPU"
    ranks = f"torchrun, {j['processes']} ranks of batch {j['batch_per_process']}" if j["processes"] > 1 else "1 process"
    return f"{where} ({ranks}), {j['threads']} CPU thread(s), {j['mem_mb']} MB, {j['runtime_min']} min"


def text(rows: list[dict], source: str) -> str:
    out = [f"{source}: {len(rows)} experiment(s)"]
    for r in rows:
        t = r["settings"]["train"]
        out += [
            "",
            f"{r['experiment']}",
            f"  data shape        {tuple(r['data_shape'])}",
            f"  network           {r['network']} ({r['settings']['network']['kind']}): "
            f"{r['network_parameters']:,} parameters ({r['network_parameters'] / 1e6:.2f}M)"
            + (f", class-conditional on {r['settings']['network']['label_dim']} classes"
               if r["settings"]["network"].get("label_dim") else ""),
            f"  objective         {r['settings']['objective']['kind']}, kernel {r['settings']['objective']['kernel']['kind']}",
            f"  coupling          {r['settings']['coupling']['kind']}" + (
                f", encoder {r['encoder']}: {r['encoder_parameters']:,} parameters "
                f"({r['encoder_parameters'] / 1e6:.2f}M)" if r["encoder"] else "") + _ot_scope(r["settings"]),
            f"  training          {t['steps']:,} steps, batch {t['batch']} ({_MINIBATCH[t['minibatch']]}), "
            f"{t['optimizer']} lr {t['lr']:g}, "
            f"EMA {_ema(t)}",
            f"  train job         {_job(r['train_job'])}",
            f"  sampling          {r['settings']['sample']['steps']} step(s), t_mid {r['settings']['sample']['t_mid']}"
            + (f", {r['settings']['sample']['labels']} class labels" if "labels" in r["settings"]["sample"] else ""),
            f"  overrides         {', '.join(r['overrides']) or '-'}",
            f"  ignored           {'; '.join(r['ignored']) or '-'}",
            "  schedule",
        ] + [f"    {line}" for line in r["schedule"]] + _official_lines(r)
    return "\n".join(out)


_MINIBATCH = {"epoch": "one shuffle per epoch", "replacement": "drawn with replacement"}


def _ot_scope(settings: dict) -> str:
    """Which rows one batch-OT assignment pairs (coupling.scope), '' for other couplings."""
    if settings["coupling"]["kind"] != "ot":
        return ""
    batch, gpus = settings["train"]["batch"], settings["train"]["gpus"]
    if gpus == 1:
        return f", scope {settings['coupling']['scope']}: one assignment of the batch of {batch} (1 process)"
    if settings["coupling"]["scope"] == "rank":
        return f", scope rank: each of the {gpus} ranks assigns its own {batch // gpus} rows"
    return f", scope global: one assignment of the global batch of {batch}, gathered from the {gpus} ranks"


def _ema(t: dict) -> str:
    if t["ema_gamma"] is not None:
        form = ", sony/vct's form: decay 1 - (1 - 1/t)^(gamma+1)" if t.get("ema_form") == "sony_vct" else ""
        return f"power gamma={t['ema_gamma']:.6g}{form}"
    every = f", every {t['ema_update_every']} steps" if t["ema_update_every"] > 1 else ""
    if t["ema_warmup"] is not None:
        w = t["ema_warmup"]
        start = t.get("ema_start", 0)
        k = f"(k - {start})" if start else "k"
        copy = f"a copy of the online weights until step {start}, then " if start else ""
        return (f"{copy}min(1 - (1 + {k}/{w['inv_gamma']:g})^-{w['power']:.4g}, {t['ema']}) from a copy "
                f"(ema-pytorch){every}")
    return f"{t['ema']}{every}"


def _official_lines(r: dict) -> list[str]:
    if r["official"] is None:
        return ["  official run      - (no official counterpart: not a paper preset)"]
    lines = [f"  official run      {r['official']}: {O.RUNS[r['official']]['title']}",
             f"    from {r['official_source']}"]
    notes = [f"    - {n}" for n in O.RUNS[r["official"]].get("notes", [])]
    notes = (["  beyond settings   what the comparison of settings cannot show:"] + notes) if notes else []
    if not r["deviations"]:
        return lines + ["  differs from it   nothing (every setting the published number depends on matches)"] + notes
    lines.append(f"  differs from it   {len(r['deviations'])} setting(s)")
    for d in r["deviations"]:
        lines.append(f"    {d['key']}: ours {d['ours']!r}, official {d['official']!r}")
        lines.append(f"      why: {d['why'] or 'NOT EXPLAINED (add it under official.why)'}")
    return lines + notes
