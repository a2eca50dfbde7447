"""`ctcoupling describe`: what a params file will train, before any GPU hour is spent."""
from __future__ import annotations

import torch

from . import networks, objectives
from . import params as P

_IMAGE_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28)}


def data_shape(params: dict, dataset: str) -> tuple[int, ...]:
    """Per-sample shape of a data set from its params spec alone (no data needed)."""
    spec = params["datasets"][dataset]
    if P.is_2d(params, dataset):
        return (2,)
    if spec["source"] == "npz":
        return tuple(spec["shape"])
    return _IMAGE_SHAPES[spec["source"]]


def describe(params: dict, only: str | None = None) -> list[dict]:
    rows = []
    for e in P.experiments(params):
        if only and e.name != only:
            continue
        shape = data_shape(params, e.dataset)
        with torch.device("meta"):  # counts without allocating 50M-parameter weights
            net = networks.build(e.config["network"], shape)
            enc = networks.build(e.config["encoder_network"], shape, out_mult=2) if "encoder_network" in e.config else None
        obj = objectives.build(e.config["objective"], e.config["train"]["steps"])
        rows.append({
            "experiment": e.name,
            "data_shape": list(shape),
            "network": e.config["train"]["network"],
            "network_parameters": networks.count_params(net),
            "encoder": e.config["coupling"].get("encoder"),
            "encoder_parameters": networks.count_params(enc) if enc is not None else 0,
            "schedule": obj.summary(),
            "overrides": list(e.overrides),
            "settings": e.config,
        })
    if only and not rows:
        P.experiment(params, only)  # raises with the list of names
    return rows


def text(rows: list[dict], source: str) -> str:
    out = [f"{source}: {len(rows)} experiment(s)"]
    for r in rows:
        t = r["settings"]["train"]
        out += [
            "",
            f"{r['experiment']}",
            f"  data shape        {tuple(r['data_shape'])}",
            f"  network           {r['network']} ({r['settings']['network']['kind']}): "
            f"{r['network_parameters']:,} parameters ({r['network_parameters'] / 1e6:.2f}M)",
            f"  objective         {r['settings']['objective']['kind']}, kernel {r['settings']['objective']['kernel']['kind']}",
            f"  coupling          {r['settings']['coupling']['kind']}" + (
                f", encoder {r['encoder']}: {r['encoder_parameters']:,} parameters "
                f"({r['encoder_parameters'] / 1e6:.2f}M)" if r["encoder"] else ""),
            f"  training          {t['steps']:,} steps, batch {t['batch']}, {t['optimizer']} lr {t['lr']:g}, "
            f"EMA {t['ema'] if t['ema_gamma'] is None else 'power gamma=' + str(t['ema_gamma'])}",
            f"  sampling          {r['settings']['sample']['steps']} step(s), t_mid {r['settings']['sample']['t_mid']}",
            f"  overrides         {', '.join(r['overrides']) or '-'}",
            "  schedule",
        ] + [f"    {line}" for line in r["schedule"]]
    return "\n".join(out)
