"""Published-number audit (audit.py): every verdict on synthetic measurements, registry validation,
and params/published_fids.yaml against the project's PUBLISHED.md."""
import copy
import csv
import io
import re

import pytest
import yaml

from conftest import ROOT
from ctcoupling.results import audit
from ctcoupling.core.errors import UserError

REGISTRY = ROOT / "params" / "published_fids.yaml"
PUBLISHED = ROOT.parent / "shared" / "PUBLISHED.md"
GC_PARAMS = "params/cifar10_gc_net.yaml"


def row(value=10.0, std=None, status="read_in_source", nfe=1, metric="fid", reproduce=True, **kw) -> dict:
    rep = {"params": GC_PARAMS, "dataset": "cifar10", "objective": "ict", "coupling": "gc", "nfe": nfe}
    return {"id": "r", "dataset": "cifar10", "resolution": 32, "conditional": False, "method": "iCT-GC",
            "nfe": nfe, "metric": metric, "value": value, "std": std, "status": status, "source": "paper",
            "protocol": "FID-50k", "reproduce": rep if reproduce else None, **kw}


def measured(mean, **kw) -> dict:
    return {"metric": "fid", "mean": mean, "std": 0.1, "n_seeds": 3, "n_samples": 50_000, "reference": "train-50000",
            "extractor": "inception-v3-compat", "nfe": 1, "protocol": "torch-fidelity, METHODS 8",
            "fid_protocol": "standard", "checkpoint": "final", "available": True, **kw}


def judge(r, m, params=GC_PARAMS) -> dict:
    return audit.verdict(r, m, params)


def test_tolerance_is_two_std_or_five_percent():
    assert audit.tolerance(10.0, None) == 0.5
    assert audit.tolerance(4.0, 0.5) == 1.0          # 2 std wins
    assert audit.tolerance(5.95, 0.05) == pytest.approx(0.2975)  # 5 % wins


@pytest.mark.parametrize("mean, expected", [(10.5, "within tolerance"), (9.5, "within tolerance"),
                                            (10.5001, "outside tolerance"), (9.4999, "outside tolerance")])
def test_boundary_without_std(mean, expected):
    out = judge(row(10.0), measured(mean))
    assert out["verdict"] == expected and out["tolerance"] == 0.5
    assert out["difference"] == pytest.approx(mean - 10.0)


@pytest.mark.parametrize("mean, expected", [(5.0, "within tolerance"), (3.0, "within tolerance"),
                                            (5.0001, "outside tolerance"), (2.9999, "outside tolerance")])
def test_boundary_with_std(mean, expected):
    assert judge(row(4.0, std=0.5), measured(mean))["verdict"] == expected


@pytest.mark.parametrize("change, reason", [
    ({"extractor": "clip-vit-b-32"}, "features from clip-vit-b-32"),
    ({"n_samples": 10_000}, "10000 samples, not 50000"),
    ({"nfe": 2}, "sampled with 2 NFE, published at 1 NFE"),
    ({"metric": "kid"}, "measured kid, published fid"),
])
def test_not_comparable_says_why(change, reason):
    out = judge(row(), measured(10.0, **change))
    assert out["verdict"] == "not comparable" and reason in out["note"]
    assert out["measured"] == 10.0 and out["difference"] is None


def test_another_fid_protocol_is_not_comparable_and_says_how_to_fix_it():
    out = judge(row(fid_protocol="gc"), measured(10.0))
    assert out["verdict"] == "not comparable"
    assert "measured with the standard FID protocol, published with the gc one" in out["note"]
    assert "evaluate.fidelity.protocol: gc" in out["note"]
    assert judge(row(fid_protocol="gc"), measured(10.0, fid_protocol="gc"))["verdict"] == "within tolerance"


def test_like_for_like_notes_checkpoint_choice_and_unknown_protocols():
    best = judge(row(fid_protocol="vct", checkpoint="best"), measured(10.2, fid_protocol="vct"))
    assert best["verdict"] == "within tolerance"
    assert "published: the best checkpoint of the evaluations during training; measured: the final model" in best["note"]
    unknown = judge(row(), measured(10.2))
    assert "the paper's FID protocol is unknown" in unknown["note"]
    assert "does not say which checkpoint" in unknown["note"]
    final = judge(row(fid_protocol="standard", checkpoint="final"), measured(10.2))
    assert final["note"] is None


def test_registry_rows_with_a_preset_name_their_protocol():
    """Every row a preset reproduces says how the paper measured (fid_protocol), so like is compared with like."""
    for r in audit.load_registry(REGISTRY):
        if r["reproduce"] is not None:
            assert r.get("fid_protocol") in ("standard", "vct", "gc"), r["id"]


def test_unavailable_when_inception_weights_are_missing():
    out = judge(row(), measured(None, available=False))
    assert out["verdict"] == "unavailable" and out["measured"] is None
    assert audit.WEIGHTS in out["note"] and "CTCOUPLING_INCEPTION_WEIGHTS" in out["note"]


def test_not_run_without_measurement_or_when_another_params_file_is_current():
    command = f"snakemake --cores all --config params={GC_PARAMS}"
    for out in (judge(row(), None), judge(row(), measured(10.0), params="params/default.yaml")):
        assert out["verdict"] == "not run" and command in out["note"] and out["measured"] is None
    assert judge(row(), measured(10.0), params=f"./{GC_PARAMS}")["verdict"] == "within tolerance"


def test_reference_only_rows_say_why():
    out = judge(row(reproduce=False, reference_only="another method"), measured(10.0))
    assert out["verdict"] == "reference only" and out["preset"] is None and out["note"] == "another method"


@pytest.mark.parametrize("status, note", [("unchecked", "published value not checked in its source"),
                                          ("seed", "from the seed summary; not settled"), ("read_in_source", None)])
def test_unsettled_rows_keep_verdict_and_say_so(status, note):
    for m, verdict in [(measured(10.2), "within tolerance"), (measured(12.0), "outside tolerance"), (None, "not run")]:
        out = judge(row(status=status), m)
        assert out["verdict"] == verdict and out["status"] == status
        assert (note in out["note"]) if note else ("unchecked" not in (out["note"] or ""))


def test_audit_table_looks_up_measurements_by_cell():
    registry = [row(), dict(row(metric="kid", value=0.26, std=0.02), id="k"),
                dict(row(reproduce=False, reference_only="x"), id="n")]
    key = (GC_PARAMS, "cifar10", "ict", "gc", 1, "fid")
    rows = audit.audit_table(registry, {key: measured(10.1)}, GC_PARAMS)
    assert [r["verdict"] for r in rows] == ["within tolerance", "not run", "reference only"]
    assert audit.measurement_key(registry[1]) == key[:-1] + ("kid",)


def test_markdown_and_csv_are_deterministic_and_show_every_status():
    registry = [row(status=s) | {"id": s, "dataset": d} for s, d in
                [("read_in_source", "cifar10"), ("cited", "cifar10"), ("seed", "imagenet64"), ("unchecked", "cifar10")]]
    rows = audit.audit_table(registry, {}, GC_PARAMS)
    text = audit.markdown(rows, "Measured: none.")
    assert text == audit.markdown(rows, "Measured: none.") and text.count("## cifar10") == 1
    assert text.index("## cifar10") < text.index("## imagenet64") < text.index("## Legend")
    table_lines = [line for line in text.splitlines() if line.startswith("| iCT-GC")]
    assert [line.split(" | ")[4] for line in table_lines] == ["read_in_source", "cited", "unchecked", "seed"]
    assert "max(2 x published std, 5% of the published value)" in text
    parsed = list(csv.reader(io.StringIO(audit.csv_text(rows))))
    assert tuple(parsed[0]) == audit.COLUMNS and len(parsed) == 5
    assert audit.csv_text(rows) == audit.csv_text(copy.deepcopy(rows))


# --- registry file -----------------------------------------------------------------------------

def write_registry(tmp_path, entries) -> str:
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"entries": entries}, sort_keys=False))
    return str(path)


def test_shipped_registry_loads_and_ids_are_unique():
    entries = audit.load_registry(REGISTRY)
    assert len({e["id"] for e in entries}) == len(entries)
    rows = audit.audit_table(entries, {}, GC_PARAMS)
    assert all(r["verdict"] in ("not run", "reference only") for r in rows)


def test_every_row_of_this_suites_methods_has_a_preset():
    """Issue 15: every published row of a method and setting this suite trains names the preset cell that
    reproduces it; only other methods (or settings no preset can match) are reference-only, with a reason.
    The cells named exist in their params files."""
    from ctcoupling.config import params as P

    entries = audit.load_registry(REGISTRY)
    presets = {e["reproduce"]["params"] for e in entries if e["reproduce"]}
    assert {"params/imagenet64_ecm_vc.yaml", "params/imagenet32_ict_gc.yaml", "params/celeba64_ict_gc.yaml",
            "params/lsun_church64_ict_gc.yaml"} <= presets
    for e in entries:
        r = e["reproduce"]
        if r is None:
            assert e["reference_only"] and not re.match(r"iCT-(IC|OT|GC)", e["method"]), e["id"]
            continue
        cells = {(x.dataset, x.objective, x.coupling) for x in P.experiments(P.load(ROOT / r["params"]))}
        assert (r["dataset"], r["objective"], r["coupling"]) in cells, e["id"]
    ours = [e["id"] for e in entries if e["dataset"] in ("imagenet32", "celeba64", "lsun_church64")]
    assert len(ours) == 9 and all(next(x for x in entries if x["id"] == i)["reproduce"] for i in ours)
    vct = next(e for e in entries if e["id"] == "imagenet64-vct-best-nfe2-fid")
    assert vct["reproduce"]["params"] == "params/imagenet64_ecm_vc.yaml" and vct["reproduce"]["nfe"] == 2


def test_a_row_without_a_preset_needs_a_reason(tmp_path):
    path = write_registry(tmp_path, [row(reproduce=False)])
    with pytest.raises(UserError, match="reference_only"):
        audit.load_registry(path)
    path = write_registry(tmp_path, [row(reference_only="why")])
    with pytest.raises(UserError, match=re.escape(path)):
        audit.load_registry(path)


@pytest.mark.parametrize("edit, key", [
    (lambda es: es.append(dict(es[0])), "entries[1].id"),
    (lambda es: es[0].update(status="settled"), "entries[0].status"),
    (lambda es: es[0].pop("source"), "entries[0]"),
    (lambda es: es[0].update(colour="red"), "entries[0]"),
    (lambda es: es[0]["reproduce"].update(nfe=2), "entries[0].reproduce.nfe"),
])
def test_registry_errors_name_file_and_key(tmp_path, edit, key):
    entries = [row()]
    edit(entries)
    path = write_registry(tmp_path, entries)
    with pytest.raises(UserError, match=re.escape(path)) as e:
        audit.load_registry(path)
    assert f"key '{key}'" in str(e.value) and "\n" not in str(e.value)


def test_missing_key_is_named(tmp_path):
    entries = [row()]
    del entries[0]["source"]
    with pytest.raises(UserError, match="'source' is a required property"):
        audit.load_registry(write_registry(tmp_path, entries))


def test_missing_registry_file(tmp_path):
    with pytest.raises(UserError, match="published registry not found"):
        audit.load_registry(tmp_path / "none.yaml")


def test_preset_mappings_name_real_grid_cells():
    """Every `reproduce` names a params file, data set, objective and coupling of that file's grid."""
    from ctcoupling.config import params as P

    for e in audit.load_registry(REGISTRY):
        if (r := e["reproduce"]) is not None:
            cells = {(x.dataset, x.objective, x.coupling) for x in P.experiments(P.load(ROOT / r["params"]))}
            assert (r["dataset"], r["objective"], r["coupling"]) in cells, e["id"]


# --- PUBLISHED.md ------------------------------------------------------------------------------

DATASETS = {"CIFAR-10": "cifar10", "ImageNet 64": "imagenet64", "ImageNet 32": "imagenet32",
            "CelebA 64": "celeba64", "LSUN Church 64": "lsun_church64"}


def number(text: str) -> tuple[float, float | None]:
    value, _, std = text.partition("±")
    return float(value), float(std) if std.strip() else None


SOURCE_STATUS = {"verified": "read_in_source", "unverified": "unchecked"}  # PUBLISHED.md's words -> the registry's


def published_numbers(text: str) -> list[tuple]:
    """(dataset, method, nfe, value, std, status, metric) for every number in PUBLISHED.md's tables: FID,
    but FD_DINOv2 in its section; a table led by "data set | NFE" (the sCT section) names the data set
    in its first column and may restate numbers of another table."""
    out, dataset, metric, columns = [], None, "fid", None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:].removeprefix("FD_DINOv2 (")
            metric = "fd_dinov2" if line[3:].startswith("FD_DINOv2") else "fid"
            dataset = next((v for k, v in DATASETS.items() if title.startswith(k)), None)
            columns = None
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if columns is None:
                columns = cells
            elif columns[0] == "method" or columns[:2] == ["data set", "NFE"]:
                method, nfes, values, status = cells[:4]
                where = dataset if columns[0] == "method" else next(v for k, v in DATASETS.items()
                                                                    if method.startswith(k))
                status = SOURCE_STATUS.get(status, status)
                for nfe, value in zip(nfes.split(" / "), values.split(" / ")):
                    out.append((where, method, None if nfe == "?" else int(nfe), *number(value), status, metric))
            else:  # data set x coupling
                for coupling, value in zip(columns[1:], cells[1:]):
                    out.append((DATASETS[cells[0]], coupling, 1, *number(value), "read_in_source", metric))
    return out


@pytest.mark.skipif(not PUBLISHED.exists(), reason="PUBLISHED.md is not next to the checkout")
def test_every_published_number_is_in_the_registry():
    # rows read in the sCT paper (arXiv 2410.11081 v2, issue 26) beyond PUBLISHED.md: v2's CIFAR-10 1-step
    # value and Table 8's smaller ImageNet 64 sizes
    beyond = {"cifar10-sct-v2-nfe1-fid"} | {f"imagenet64-sct-{s}-nfe{n}-fid" for s in "sml" for n in (1, 2)}
    entries = [e for e in audit.load_registry(REGISTRY) if e["id"] not in beyond]
    assert len(entries) == len(audit.load_registry(REGISTRY)) - len(beyond)
    numbers = {}  # restated numbers (the sCT section) once, under the method of their first table
    for dataset, method, nfe, value, std, status, metric in published_numbers(PUBLISHED.read_text()):
        numbers.setdefault((dataset, nfe, value, std, status, metric), method)
    for metric, count in [("fid", 43), ("fd_dinov2", 4)]:
        rows = [e for e in entries if e["metric"] == metric]
        assert len([k for k in numbers if k[-1] == metric]) == len(rows) == count
    for (dataset, nfe, value, std, status, metric), method in numbers.items():
        match = [e for e in entries if (e["dataset"], e["nfe"], e["value"], e["std"], e["status"], e["metric"]) ==
                 (dataset, nfe, value, std, status, metric)]
        assert len(match) == 1, (dataset, method, nfe, value)
        assert method == match[0]["method"] or method.split()[0] in match[0]["method"]


@pytest.mark.skipif(not PUBLISHED.exists(), reason="PUBLISHED.md is not next to the checkout")
def test_gc_table1_kid_and_is_are_in_the_registry():
    text = PUBLISHED.read_text()
    for metric, label in [("kid", "KID x100"), ("is", "IS")]:
        block = re.search(rf"{label} \(([^)]*)\)", text).group(1)
        published = [number(v) for v in re.findall(r"\d+\.\d+ ± \d+\.\d+", block)]
        ours = [(e["value"], e["std"]) for e in audit.load_registry(REGISTRY) if e["metric"] == metric]
        assert ours == published and len(ours) == 3


def test_known_values():
    by_id = {e["id"]: e for e in audit.load_registry(REGISTRY)}
    gc = by_id["cifar10-gc-table1-gc-nfe1-fid"]
    assert (gc["value"], gc["std"], gc["reproduce"]["coupling"]) == (5.95, 0.05, "gc")
    assert by_id["cifar10-ecm-400k-nfe2-fid"]["reproduce"]["params"] == "params/cifar10_ecm.yaml"
    assert by_id["cifar10-vct-best-nfe-unknown-fid"]["nfe"] is None
    assert by_id["imagenet64-ict-deep-nfe2-fid"]["value"] == 2.77
    assert by_id["cifar10-edm-heun-nfe35-fid"]["reproduce"] is None


class Exp:
    def __init__(self, coupling, seed=0):
        self.dataset, self.objective, self.coupling, self.seed = "cifar10", "ict", coupling, seed


def record(fid, kid=0.004, available=True, n=50_000, steps=(1,), fid_protocol="gc"):
    summary = {str(s): {"fid": {"mean": fid, "std": None, "n": 1}, "kid": {"mean": kid, "std": None, "n": 1}}
               for s in steps} if available else {}
    return {"available": available, "steps": list(steps), "summary": summary, "extractor": audit.FID_EXTRACTOR,
            "n_generated": n if available else None, "reference": "train", "n_reference": 50_000,
            "protocol": "inception-v3-compat, 50000 generated", "fid_protocol": fid_protocol, "checkpoint": "final"}


def test_eval_records_of_training_seeds_merge_into_mean_and_std():
    """Three training seeds of a cell: mean and sample std over their FIDs (the GC paper's mean ± std);
    KID is scaled x100 like the registry; an unavailable record makes the row 'unavailable'."""
    cells = audit.collect(GC_PARAMS, [(Exp("gc", s), record(f)) for s, f in enumerate([5.9, 6.0, 6.1])] +
                          [(Exp("ic"), record(0.0, available=False))])
    gc = cells[(GC_PARAMS, "cifar10", "ict", "gc", 1, "fid")]
    assert gc["mean"] == pytest.approx(6.0) and gc["std"] == pytest.approx(0.1) and gc["n_seeds"] == 3
    assert "over 3 training seeds" in gc["protocol"]
    assert cells[(GC_PARAMS, "cifar10", "ict", "gc", 1, "kid")]["mean"] == pytest.approx(0.4)
    rows = {r["id"]: r for r in audit.audit_table(audit.load_registry(REGISTRY), cells, GC_PARAMS)}
    by_method = {(r["method"], r["metric"]): r for r in rows.values() if r["preset"] and "gc_net" in r["preset"]}
    gc_row = next(r for (m, metric), r in by_method.items() if m.startswith("iCT-GC") and metric == "fid")
    assert gc_row["verdict"] == "within tolerance" and gc_row["measured"] == pytest.approx(6.0)
    ic_row = next(r for (m, metric), r in by_method.items() if m.startswith("iCT-IC") and metric == "fid")
    assert ic_row["verdict"] == "unavailable"


def test_fd_dinov2_is_measured_from_its_own_extractor_and_compared_only_on_dgm_evals_resize():
    r = row(128.63, metric="fd_dinov2")
    pil = measured(130.0, metric="fd_dinov2", extractor=audit.FD_DINOV2_EXTRACTOR)
    assert judge(r, pil)["verdict"] == "within tolerance"
    out = judge(r, pil | {"extractor": "ctcoupling-dinov2-vit-l-14-torch"})
    assert out["verdict"] == "not comparable" and f"not {audit.FD_DINOV2_EXTRACTOR}" in out["note"]
    key = (GC_PARAMS, "cifar10", "ict", "gc", 1, "fd_dinov2")
    assert key not in audit.measurements_from_eval(GC_PARAMS, Exp("gc"), record(6.0))  # not asked for
    rec = record(6.0) | {"fd_dinov2": {"extractor": audit.FD_DINOV2_EXTRACTOR, "resize": "pil"}}
    rec["summary"]["1"]["fd_dinov2"] = {"mean": 130.0, "std": None, "n": 1}
    cells = audit.measurements_from_eval(GC_PARAMS, Exp("gc"), rec)
    assert cells[key]["mean"] == 130.0 and cells[key]["extractor"] == audit.FD_DINOV2_EXTRACTOR
    assert cells[key[:-1] + ("fid",)]["extractor"] == audit.FID_EXTRACTOR
    shipped = [e for e in audit.load_registry(REGISTRY) if e["metric"] == "fd_dinov2"]
    assert [(e["method"], e["nfe"], e["value"]) for e in shipped] == [
        ("EDM", 35, 145.2), ("StyleGAN-XL", 1, 204.6), ("ECM (ECT)", 1, 198.51), ("ECM (ECT)", 2, 128.63)]
    assert all(e["source"].startswith("locuslab/ect README") and e["reference_only"] for e in shipped)


def test_a_preset_that_is_not_the_official_run_says_so_and_a_fine_tuned_row_is_not_comparable():
    """The ImageNet-64 preset without train.init trains from scratch where sony/vct fine-tunes EDM2-S:
    its audit row says so, and a measurement of it is not comparable (official.DEFINING)."""
    from ctcoupling.config import official
    from ctcoupling.config import params as P

    rep = {"params": "params/imagenet64_ecm_vc.yaml", "dataset": "imagenet64", "objective": "ecm",
           "coupling": "vc", "nfe": 2}
    preset = P.load(ROOT / rep["params"])
    devs = official.preset_deviations(P.experiments(preset), preset["official"], rep)
    assert [d["key"] for d in devs] == ["train.init", "sample.labels"]
    r = row(1.97, nfe=2, dataset="imagenet64", fid_protocol="vct")
    r["reproduce"] = rep
    out = audit.verdict(r, None, GC_PARAMS, devs)
    assert out["verdict"] == "not run"
    assert ("the preset differs from the official run in train.init: trains from scratch: not the official run; "
            "set train.init to edm2-img64-s-1073741-0.075.pkl") in out["note"]
    out = audit.verdict(r, measured(1.97, nfe=2, fid_protocol="vct", checkpoint="best"), rep["params"], devs)
    assert out["verdict"] == "not comparable"
    assert "not the official run: train.init is None, officially 'edm2-img64-s-1073741-0.075.pkl'" in out["note"]
    only_labels = [d for d in devs if d["key"] != "train.init"]  # train.init set: the labels alone do not count
    assert audit.verdict(r, measured(1.97, nfe=2, fid_protocol="vct", checkpoint="best"), rep["params"],
                         only_labels)["verdict"] == "within tolerance"
