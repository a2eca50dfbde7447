"""Published-number audit: each row of params/published_fids.yaml against what this project measured.

Tolerance. A measured mean m agrees with a published value v (std s) when

    |m - v| <= tolerance(v, s) = max(2 s, 0.05 v)        (5 % alone where the paper gives no std)

Two published standard deviations cover the run-to-run noise a paper reports; 5 % covers what the
FID protocols change between papers (reference set, resize, Inception port, checkpoint choice), which
moves FID by a few percent at equal models. The same band applies to KID x100, IS and FD_DINOv2
(the Fréchet distance on DINOv2 ViT-L/14 features, measured with dgm-eval's PIL resize).

Verdicts, in the order they are decided:
- "reference only": no params file of this project reproduces the row (`reproduce: null`): another
  method, or a setting that none of the presets matches; the row's `reference_only` says which.
- "not run": the preset is not the current params file, or its cell has no measurement yet.
- "unavailable": the Inception weights were missing, so nothing was measured.
- "not comparable": measured with another extractor, a sample count other than 50,000, another NFE,
  another metric (METHODS 8) or another FID protocol than the paper's (`fid_protocol`: how the images
  became uint8, ctcoupling.measure.fidelity.PROTOCOLS). A different checkpoint choice (the papers' best of
  their evaluations during training against our final model) is compared but named in the note.
- "within tolerance" / "outside tolerance": the comparison above.
Rows whose published value is `unchecked` or `seed` keep their verdict; their note says so. The status
says where the published number was read, never that this suite reproduced it.

Everything here is pure except `load_registry`, which reads and validates the registry file.
"""
from __future__ import annotations

import csv
import io
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from ctcoupling.core.errors import UserError
from ctcoupling.config.official import DEFINING
from ctcoupling.config.params import _describe

FID_EXTRACTOR = "inception-v3-compat"
FD_DINOV2_EXTRACTOR = "ctcoupling-dinov2-vit-l-14-pil"  # fidelity.DINOV2_EXTRACTORS: PIL bicubic resize, as dgm-eval
EXTRACTOR = {"fid": FID_EXTRACTOR, "kid": FID_EXTRACTOR, "is": FID_EXTRACTOR, "fd_dinov2": FD_DINOV2_EXTRACTOR}
FID_SAMPLES = 50_000
TOLERANCE_SIGMAS, TOLERANCE_REL = 2.0, 0.05
WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # as fidelity.py, which this pure module does not import
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS}"
VERDICTS = ("within tolerance", "outside tolerance", "not run", "not comparable", "unavailable", "reference only")
STATUS_NOTES = {"unchecked": "published value not checked in its source", "seed": "from the seed summary; not settled"}
COLUMNS = ("id", "dataset", "method", "nfe", "metric", "published", "published_std", "status", "source",
           "published_protocol", "preset", "measured", "measured_std", "protocol", "n_samples", "difference",
           "tolerance", "verdict", "note")


@lru_cache(maxsize=1)
def schema() -> dict:
    """workflow/schemas/published.schema.yaml: packaged next to params.schema.yaml, else the checkout's."""
    packaged = resources.files("ctcoupling").joinpath("schemas/published.schema.yaml")
    checkout = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "published.schema.yaml"
    path = packaged if packaged.is_file() else checkout
    return yaml.safe_load(path.read_text())


def load_registry(path: str | Path) -> list[dict]:
    """The registry's entries, validated; every problem is one UserError line naming the file and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: published registry not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read published registry ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    best = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema()).iter_errors(data))
    if best is not None:
        while best.context:  # descend from oneOf/anyOf to the concrete cause
            best = jsonschema.exceptions.best_match(best.context)
        raise UserError(f"{path}: {_describe(best)}")
    seen = {}
    for i, row in enumerate(data["entries"]):
        if row["id"] in seen:
            raise UserError(f"{path}: key 'entries[{i}].id': duplicate id '{row['id']}' "
                            f"(first at entries[{seen[row['id']]}])")
        seen[row["id"]] = i
        if row["reproduce"] is not None and row["reproduce"]["nfe"] != row["nfe"]:
            raise UserError(f"{path}: key 'entries[{i}].reproduce.nfe': {row['reproduce']['nfe']} differs from "
                            f"the row's nfe {row['nfe']}")
    return data["entries"]


def tolerance(value: float, std: float | None = None) -> float:
    """max(2 std, 5 % of the value); 5 % alone without a std (module docstring)."""
    rel = TOLERANCE_REL * abs(value)
    return rel if std is None else max(TOLERANCE_SIGMAS * std, rel)


def measurement_key(row: dict) -> tuple | None:
    """(params, dataset, objective, coupling, nfe, metric) of the preset cell that reproduces the row."""
    r = row["reproduce"]
    return None if r is None else (os.path.normpath(r["params"]), r["dataset"], r["objective"], r["coupling"], r["nfe"],
                                   row["metric"])


SCALE = {"fid": 1.0, "kid": 100.0, "is": 1.0, "fd_dinov2": 1.0}  # the registry gives KID x100, as the GC paper does


def measurements_from_eval(params_path: str, exp, record: dict) -> dict[tuple, dict]:
    """Measured values of one experiment's eval.json `fidelity` record, keyed like `measurement_key`:
    one per (NFE, metric), mean and std over the record's seeds, KID scaled x100; fd_dinov2 only where
    the record has it, with its own extractor."""
    out = {}
    for nfe in record["steps"]:
        summary = record["summary"].get(str(nfe), {})
        for metric, scale in SCALE.items():
            if (record["available"] and metric not in summary) or (metric == "fd_dinov2" and metric not in record):
                continue
            s = summary.get(metric, {})
            extractor = record[metric]["extractor"] if metric == "fd_dinov2" else record["extractor"]
            out[(os.path.normpath(params_path), exp.dataset, exp.objective, exp.coupling, nfe, metric)] = {
                "metric": metric, "available": record["available"], "nfe": nfe, "extractor": extractor,
                "mean": s["mean"] * scale if s else None,
                "std": s["std"] * scale if s and s["std"] is not None else None,
                "n_seeds": s.get("n"), "n_samples": record.get("n_generated"),
                "reference": f"{record['reference']}-{record['n_reference']}", "protocol": record.get("protocol"),
                "fid_protocol": record.get("fid_protocol", "standard"), "checkpoint": record.get("checkpoint", "final"),
            }
    return out


def merge(measured: list[dict]) -> dict:
    """One preset cell measured by several training seeds: mean and sample std over the seeds' means
    (the GC paper's mean ± std over runs); a single seed keeps its own (sampling-seed) std."""
    if len(measured) == 1 or not all(m["available"] for m in measured):
        return measured[0]
    means = [m["mean"] for m in measured]
    mean = sum(means) / len(means)
    std = (sum((v - mean) ** 2 for v in means) / (len(means) - 1)) ** 0.5
    return measured[0] | {"mean": mean, "std": std, "n_seeds": len(means),
                          "protocol": f"{measured[0]['protocol']}; mean ± std over {len(means)} training seeds"}


def collect(params_path: str, records: list[tuple]) -> dict[tuple, dict]:
    """Measurements keyed like `measurement_key` from (experiment, eval.json fidelity record) pairs,
    training seeds of one cell merged."""
    cells: dict[tuple, list[dict]] = {}
    for exp, record in records:
        for key, m in measurements_from_eval(params_path, exp, record).items():
            cells.setdefault(key, []).append(m)
    return {key: merge(ms) for key, ms in cells.items()}


def same_params(a: str, b: str) -> bool:
    """One params file under two spellings (./params/x.yaml, an absolute path ending in params/x.yaml)."""
    a, b = os.path.normpath(a), os.path.normpath(b)
    return a == b or a.endswith(os.sep + b) or b.endswith(os.sep + a)


def _incomparable(row: dict, measured: dict) -> list[str]:
    """Why a measured value cannot stand next to the published one (METHODS 8), or []."""
    reasons = []
    if measured["metric"] != row["metric"]:
        reasons.append(f"measured {measured['metric']}, published {row['metric']}")
    expected = EXTRACTOR.get(measured["metric"], FID_EXTRACTOR)
    if measured["extractor"] != expected:
        reasons.append(f"features from {measured['extractor']}, not {expected}")
    if measured["n_samples"] != FID_SAMPLES:
        reasons.append(f"{measured['n_samples']} samples, not {FID_SAMPLES}")
    if measured["nfe"] != row["nfe"]:
        reasons.append(f"sampled with {measured['nfe']} NFE, published at {row['nfe'] or 'unknown'} NFE")
    published = row.get("fid_protocol", "unknown")
    if published != "unknown" and measured["fid_protocol"] != published:
        reasons.append(f"measured with the {measured['fid_protocol']} FID protocol, published with the {published} "
                       f"one (set the preset's evaluate.fidelity.protocol: {published})")
    return reasons


def _like_for_like(row: dict, measured: dict) -> list[str]:
    """What the comparison cannot hold equal: an unknown published protocol, another checkpoint choice."""
    notes = []
    if row.get("fid_protocol", "unknown") == "unknown":
        notes.append("the paper's FID protocol is unknown")
    published = row.get("checkpoint", "unknown")
    if published == "best" and measured["checkpoint"] != "best":
        notes.append(f"published: the best checkpoint of the evaluations during training; measured: the "
                     f"{measured['checkpoint']} model (the published value is biased low against ours)")
    elif published == "unknown":
        notes.append("the paper does not say which checkpoint it measured")
    return notes


def verdict(row: dict, measured: dict | None, current_params: str, deviations: list[dict] = ()) -> dict:
    """One audit row (COLUMNS) for a registry row and its measurement, if any (module docstring).
    `published_protocol` is how the paper measured, `protocol` how this project did. `deviations`: how
    the preset's cell differs from the official run (official.preset_deviations), each named in the note;
    a measurement that differs in a defining setting (official.DEFINING, e.g. trained from scratch where
    the paper fine-tunes) is not comparable."""
    r = row["reproduce"]
    out = dict.fromkeys(COLUMNS)
    out.update(id=row["id"], dataset=row["dataset"], method=row["method"], nfe=row["nfe"], metric=row["metric"],
               published=row["value"], published_std=row["std"], status=row["status"], source=row["source"],
               published_protocol=row["protocol"])
    notes = [STATUS_NOTES[row["status"]]] if row["status"] in STATUS_NOTES else []
    if r is None:
        out["verdict"] = "reference only"
        notes.append(row["reference_only"])
    else:
        out["preset"] = f"{r['params']} {r['dataset']}-{r['objective']}-{r['coupling']} nfe={r['nfe']}"
        if measured is None or not same_params(r["params"], current_params):
            out["verdict"] = "not run"
            notes.append(f"run: snakemake --cores all --config params={r['params']}")
        elif not measured["available"]:
            out["verdict"] = "unavailable"
            notes.append(f"Inception weights missing: download {WEIGHTS_URL} and set CTCOUPLING_INCEPTION_WEIGHTS "
                         "(or params `evaluate.fidelity.inception_weights`) to the file's path, then run again")
        else:
            out.update(measured=measured["mean"], measured_std=measured["std"], protocol=measured["protocol"],
                       n_samples=measured["n_samples"])
            reasons = _incomparable(row, measured) + [
                f"not the official run: {d['key']} is {d['ours']!r}, officially {d['official']!r}"
                for d in deviations if d["key"] in DEFINING]
            if reasons:
                out["verdict"] = "not comparable"
                notes += reasons
            else:
                notes += _like_for_like(row, measured)
                out["difference"] = measured["mean"] - row["value"]
                out["tolerance"] = tolerance(row["value"], row["std"])
                out["verdict"] = ("within tolerance" if abs(out["difference"]) <= out["tolerance"]
                                  else "outside tolerance")
    if r is not None and deviations:
        notes.append("the preset differs from the official run in " + "; ".join(
            f"{d['key']}: {d['why'] or 'not explained'}" for d in deviations))
    if row.get("note"):
        notes.append(row["note"])
    out["note"] = "; ".join(notes) or None
    return out


def audit_table(registry: list[dict], measurements: dict[tuple, dict], current_params: str,
                deviations: dict[str, list[dict]] | None = None) -> list[dict]:
    """Every registry row's verdict, in registry order; measurements are keyed by `measurement_key`,
    `deviations` (optional) by the row's id."""
    deviations = deviations or {}
    return [verdict(row, measurements.get(measurement_key(row)), current_params, deviations.get(row["id"], []))
            for row in registry]


def _number(x, fmt: str = ".2f", std=None) -> str:
    if x is None:
        return ""
    return f"{x:{fmt}}" + (f" ± {std:.2f}" if std is not None else "")


def _cell(x) -> str:
    return "" if x is None else str(x).replace("|", "\\|")


def markdown(rows: list[dict], source_note: str) -> str:
    """The audit as Markdown: one table per data set (registry order), then the legend."""
    lines = ["# Published numbers against this project's measurements", "", source_note, ""]
    header = ["method", "NFE", "metric", "published", "source status", "source (how measured)", "preset", "measured",
              "difference", "tolerance", "verdict", "note"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        lines += [f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in (r for r in rows if r["dataset"] == dataset):
            cells = [r["method"], "?" if r["nfe"] is None else r["nfe"], r["metric"],
                     _number(r["published"], std=r["published_std"]), r["status"],
                     f"{r['source']} ({r['published_protocol']})", r["preset"],
                     _number(r["measured"], std=r["measured_std"]), _number(r["difference"], "+.2f"),
                     _number(r["tolerance"]), r["verdict"], r["note"]]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    lines += [
        "## Legend", "",
        f"- **Tolerance**: |measured - published| <= max({TOLERANCE_SIGMAS:g} x published std, "
        f"{TOLERANCE_REL:.0%} of the published value); {TOLERANCE_REL:.0%} alone where no std is published.",
        "- **within / outside tolerance**: measured with the METHODS 8 protocol and compared as above.",
        f"- **not comparable**: measured with another extractor than {FID_EXTRACTOR} ({FD_DINOV2_EXTRACTOR} "
        "for fd_dinov2), other than "
        f"{FID_SAMPLES} samples, another NFE, another metric or another FID protocol than the paper's "
        "(docs/evaluation.md); the note says which. A different checkpoint choice (best during training "
        "against our final model) is compared, and the note says so.",
        "- **not run**: the preset that reproduces the row is not the current params file, or has no "
        "measurement yet; the note gives the command.",
        "- **unavailable**: the Inception weights were missing, so nothing was measured.",
        "- **reference only**: no params file of this project reproduces the row (another method, or a setting "
        "that none of the presets matches; the note says which).",
        "- **source status** (where the published number was read, not whether this suite reproduced it): "
        "read_in_source (the paper or official README), cited (several later papers' tables), seed (the "
        "project's seed summary), unchecked (recalled or one third-party table). Only read_in_source and cited "
        "values are settled.",
        "- KID is x100, as the GC paper reports it; higher IS is better, lower FID, KID and FD_DINOv2 are better.",
        "",
    ]
    return "\n".join(lines)


def csv_text(rows: list[dict]) -> str:
    """The audit as CSV, columns in COLUMNS order, empty cells for None."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r[k] is None else r[k]) for k in COLUMNS} for r in rows)
    return buf.getvalue()
