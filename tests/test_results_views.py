"""Where researchers read the results (issue 14): the Snakemake report, DVC's plots and metrics, DVC
experiments, on the smoke params' real runs."""
import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import background, ctc, run, say, started

from ctcoupling.config import params as P
from ctcoupling.pipeline import dag

SMOKE = "params/smoke.yaml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _report_vars(html: str) -> dict:
    """The report's embedded JavaScript variables (Snakemake's html_reporter template: `var name = {...};`)."""
    out = {}
    for name in ("results", "categories"):
        m = re.search(rf"^\s*var {name} = (\{{.*\}});\s*$", html, re.M)
        assert m, f"no `var {name}` in the report"
        out[name] = json.loads(m.group(1))
    return out


@pytest.fixture(scope="module")
def smoke_report(smoke_run, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    run(["snakemake", "--config", f"params={SMOKE}", "--report", out], smoke_run)
    return out, _report_vars(out.read_text())


def _reported(root: Path) -> list[str]:
    """analysis/'s figures and tables of a run (everything there but the JSON records and verdicts.rst)."""
    return sorted(str(p.relative_to(root)) for p in (root / "analysis").rglob("*")
                  if p.suffix in (".png", ".csv", ".md"))


@pytest.mark.full
def test_snakemake_report_embeds_every_analysis_figure_and_table_with_a_caption(smoke_run, smoke_report):
    _, report = smoke_report
    results = report["results"]
    files = _reported(smoke_run)
    params = P.load(smoke_run / SMOKE)
    expected = [o for o in dag.all_outputs(params) if o.startswith("analysis/") and not o.endswith((".json", ".rst"))]
    assert files == sorted(expected)  # the run made exactly the figures and tables the pipeline lists
    assert sorted(results) == files, set(files) ^ set(results)
    for path in files:
        entry = results[path]
        head, _, payload = entry["data_uri"].partition("base64,")
        assert base64.b64decode(payload) == (smoke_run / path).read_bytes(), path  # embedded, byte for byte
        assert entry["caption"].count("<p>") >= 1 and len(entry["caption"]) > 150, (path, entry["caption"])
    # figures that bear on claims quote their verdicts (analysis/verdicts.rst through the caption's include)
    for path in ("analysis/curves_two_gaussians.png", "analysis/fig2_discrepancy_two_gaussians.png",
                 "analysis/vct_fig1.png", "analysis/samples_2d.png"):
        assert "Verdicts" in results[path]["caption"], path
    assert re.search(r"<strong>(holds|contradicted|not significant|not tested)</strong>",
                     results["analysis/curves_two_gaussians.png"]["caption"])
    # grouped by data set (or across data sets) and topic
    cats = report["categories"]
    where = {f: (c, s) for c, subs in cats.items() for s, fs in subs.items() for f in fs}
    assert where["analysis/curves_two_gaussians.png"] == ("two_gaussians", "Training curves")
    assert where["analysis/fig3_transport_two_gaussians.png"] == ("two_gaussians", "Theory")
    assert where["analysis/claims.md"] == (dag.ACROSS, "Claims")
    assert where["analysis/audit.md"] == (dag.ACROSS, "Audit")
    assert {s for subs in cats.values() for s in subs} >= {"Samples", "Training curves", "Theory", "Claims", "Audit"}


def _screenshot(html: Path, view: str, out: Path) -> Path:
    """A headless Chromium screenshot of a page, `view` (JavaScript) run once it has loaded."""
    text = html.read_text()
    i = text.rfind("</body>")
    page = out.with_suffix(".html")
    page.write_text(text[:i] + f'<script>window.addEventListener("load", () => setTimeout(() => {{{view}}}, 300));'
                    "</script>" + text[i:])
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1500,1100", "--virtual-time-budget=10000", f"--screenshot={out}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    return out


def _colours(png: Path) -> int:
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(png)[..., :3]
    return len(np.unique((img.reshape(-1, 3) * 255).astype(int), axis=0))


@pytest.mark.full
@pytest.mark.skipif(CHROMIUM is None, reason="optional: needs Debian's chromium (apt-get install chromium)")
def test_report_renders_a_figure_with_its_caption_in_a_browser(smoke_report, tmp_path, request):
    html, report = smoke_report
    path = "analysis/curves_two_gaussians.png"
    shot = _screenshot(html, f'app.setView({{navbarMode: "resultinfo", resultPath: "{path}", content: "img", '
                             f'contentPath: results["{path}"].data_uri}})', tmp_path / "figure.png")
    home = _screenshot(html, "", tmp_path / "home.png")
    # the figure (many colours: the bands, the curves) drawn next to the caption's text
    assert _colours(shot) > 2 * _colours(home) and _colours(shot) > 200
    say(request, f"report screenshot: {shot} ({_colours(shot)} colours)")


# DVC: plots, metrics, experiments on a git + DVC project holding the smoke run's results.


def _dvc_project(smoke_run: Path, dest: Path) -> Path:
    """The smoke run's checkout and results as a git repository whose DVC records them (`dvc commit`)."""
    shutil.copytree(smoke_run, dest, symlinks=True, ignore=shutil.ignore_patterns(".snakemake", "logs"))
    run(["git", "init", "-q"], dest)
    ctc("dag", "--params", SMOKE, cwd=dest)
    run(["dvc", "commit", "--force", "-q"], dest)
    _commit(dest, "smoke run")
    return dest


def _commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], project)


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@background("dvc_experiments", needs=("smoke_run",))
def _dvc_experiments(directory: Path, smoke_run: Path) -> str:
    """The DVC plots, metrics and experiments test's runs and checks, in the background once the smoke run is
    made (every `dvc exp run` is serial, one core); returns what the test says in the session's output."""
    project = _dvc_project(smoke_run, directory / "project")
    params = P.load(project / SMOKE)
    specs = dag.plot_specs(params)
    assert run(["dvc", "status"], project).stdout.strip() == "Data and pipelines are up to date."

    # dvc plots show: each plot of dvc.yaml, every series a column of its file, numbers in every row
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    assert set(shown) == set(specs)
    for path, spec in specs.items():
        rows = shown[path][0]["content"]["data"]["values"]
        one = spec["y"][0]  # a plot of one series has no `field`, its value under its own name
        assert {r.get("field", one) for r in rows} == set(spec["y"]), path
        values = [float(r.get("dvc_inferred_y_value", r.get(one, "nan"))) for r in rows]
        assert values and all(v == v for v in values), path  # a number in every row
    assert {"IC", "OT", "GC"} <= set(specs["analysis/plots/discrepancy_two_gaussians.csv"]["y"])

    # dvc exp run -S: one coupling value re-runs that coupling's runs and what reads them, nothing else
    gc = {e.name for e in P.experiments(params) if e.coupling == "gc"}
    exp = run(["dvc", "exp", "run", "-n", "mu03", "-S", f"{SMOKE}:couplings.gc.mu=0.3"], project)
    ran = _ran(exp.stdout)
    assert {f"train-{n}" for n in gc} <= ran
    others = {s for s in ran if s.split("-", 1)[0] in ("prepare", "classifier", "train", "sample", "evaluate", "curve")
              and s.split("-", 1)[1] not in gc}
    assert not others, others
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    values = _exp_metric(shown, "two_gaussians/ict/gc/nfe1", "w2_mean")
    assert values["mu03"] != values["baseline"] and values["workspace"] == values["mu03"], values  # old next to new
    vc = _exp_metric(shown, "two_gaussians/ict/vc/nfe1", "w2_mean")
    assert vc["mu03"] == vc["baseline"], vc  # GC's value left VC's runs alone
    said = f"dvc exp show, two_gaussians/ict/gc w2_mean: {values}"
    # the training logs' summaries (DVCLive) are metrics too: GC's changed, IC's did not
    live = "runs/{}/dvclive/metrics.json"
    gc_loss = _exp_metric(shown, "loss", file=live.format("two_gaussians-ict-gc-s0"))
    ic_loss = _exp_metric(shown, "loss", file=live.format("two_gaussians-ict-ic-s0"))
    assert gc_loss["mu03"] != gc_loss["baseline"] and ic_loss["mu03"] == ic_loss["baseline"], (gc_loss, ic_loss)

    # dvc plots diff and dvc metrics diff between two git revisions (the experiment applied and committed)
    run(["dvc", "exp", "apply", "mu03"], project)
    _commit(project, "gc mu 0.3")
    diff = json.loads(run(["dvc", "plots", "diff", "HEAD~1", "HEAD", "--json"], project).stdout)["data"]
    revs = {r["rev"] for r in diff["analysis/plots/curves_two_gaussians.csv"][0]["content"]["data"]["values"]}
    assert revs == {"HEAD~1", "HEAD"}, revs
    metrics = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json"], project).stdout)
    changed = metrics["analysis/metrics.json"]
    assert "two_gaussians/ict/gc/nfe1.w2_mean" in changed
    assert not any(k.startswith("two_gaussians/ict/ic/") for k in changed), changed  # IC's runs untouched

    # a change to the grid's shape (a seed) cannot run against the old dvc.yaml: one line says what to do
    bad = run(["dvc", "exp", "run", "-S", f"{SMOKE}:grid.0.seed=[0,1]"], project, check=False)
    assert bad.returncode != 0
    assert f"dvc.yaml is out of date with {SMOKE}" in bad.stdout + bad.stderr, bad.stdout[-3000:] + bad.stderr[-3000:]
    run(["git", "checkout", "--", SMOKE], project)

    # DVC's queue (how a sweep runs): VC's kl_scale queued and run in DVC's own workspace from the commit
    # above, then `dvc exp show` lists it (one queued value: a second ran the same route again, 3 minutes)
    run(["dvc", "exp", "run", "--queue", "-n", "kl2", "-S", f"{SMOKE}:couplings.vc.kl_scale=2.0"], project)
    run(["dvc", "queue", "start", "-j", "1"], project)
    deadline = time.time() + 1200
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(5)
    assert status.count("Success") == 1, status
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    kl = _exp_metric(shown, "two_gaussians/ict/vc/nfe1", "w2_mean")
    mu = _exp_metric(shown, "two_gaussians/ict/gc/nfe1", "w2_mean")
    assert kl["kl2"] != kl["baseline"], kl
    assert mu["kl2"] == mu["baseline"], mu  # VC's value left GC's runs alone (and GC's VC's: above)
    return said


@pytest.fixture
def dvc_experiments(tmp_path_factory):
    return started("dvc_experiments", tmp_path_factory)


@pytest.mark.full
def test_dvc_plots_metrics_and_experiments(dvc_experiments, request):
    """On the smoke run made a DVC project: `dvc plots show` has every plot with numbers; `dvc exp run -S`
    of GC's mu re-runs GC's runs only and `dvc exp show` tells it from the baseline; `dvc plots diff` and
    `dvc metrics diff` between two commits; a change of the grid's shape refused in one line; a queued
    experiment run by `dvc queue` (the runs and their checks: `_dvc_experiments`)."""
    say(request, dvc_experiments.result())


def _exp_metric(shown: list, key: str, metric: str | None = None, file: str = "analysis/metrics.json") -> dict:
    """name -> file[key][metric] (file[key] without a metric) in `dvc exp show --json`: "workspace",
    "baseline" (the commit the experiments start from) and each experiment by its name."""
    out = {}

    def visit(entry, name):
        data = (entry.get("data") or {})
        value = (data.get("metrics") or {}).get(file, {}).get("data", {}).get(key)
        value = value.get(metric) if metric and isinstance(value, dict) else value
        if value is not None:
            out[name] = value

    for commit in shown:
        visit(commit, "workspace" if commit.get("rev") == "workspace" else "baseline")
        for exp in commit.get("experiments") or []:
            for e in exp.get("revs") or []:
                visit(e, e.get("name") or exp.get("name"))
    return out
