"""The figures of analysis/ (figures.py, runs.py's figures): what each draws, on small fixed inputs.
The figure functions return PNG bytes; `drawn` makes them return the matplotlib figure instead, so a
test can read its axes, labels, bands and titles."""
import io

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import collections, image

from ctcoupling.results import figures


@pytest.fixture
def drawn(monkeypatch):
    """figures' functions return the Figure (closed after the test) in place of its PNG."""
    import matplotlib.pyplot as plt

    monkeypatch.setattr(figures, "_png", lambda fig: fig)
    yield
    plt.close("all")


def _labelled(fig) -> None:
    """Every panel titled, both axes labelled (the figure-level legend aside)."""
    for ax in fig.axes:
        assert ax.get_title(), "a panel without a title"
        assert ax.get_xlabel() and ax.get_ylabel(), f"an unlabelled axis in '{ax.get_title()}'"


def _bands(ax) -> list:
    return [c for c in ax.collections if isinstance(c, collections.FillBetweenPolyCollection)
            or type(c) is collections.PolyCollection]


def _curves(seeds: dict[str, int], metric: str = "w2") -> pd.DataFrame:
    """Curves of a non-negative metric close to 0 whose seeds spread widely: a t interval over 3 seeds
    goes below 0 there."""
    rows = []
    for coupling, n in seeds.items():
        for seed in range(n):
            for step in (100, 200, 300):
                v = 0.002 if seed < n - 1 else 0.4 / step * 100
                rows.append({"dataset": "d", "objective": "ict", "coupling": coupling, "seed": seed, "step": step,
                             metric: v})
    return pd.DataFrame(rows)


def test_seed_interval_is_a_bootstrap_band_that_stays_within_the_seeds():
    v = np.array([0.002, 0.002, 0.4])
    from scipy import stats as S

    assert S.t.interval(0.95, 2, loc=v.mean(), scale=S.sem(v))[0] < 0  # the t interval would cross 0
    m, lo, hi = figures.seed_interval(v)
    assert m == pytest.approx(v.mean()) and v.min() <= lo < m < hi <= v.max()
    assert figures.seed_interval(v) == (m, lo, hi)  # a fixed generator: the same band every time
    one = figures.seed_interval([0.3])
    assert one[0] == 0.3 and np.isnan(one[1]) and np.isnan(one[2])
    assert figures.seed_interval([0.2, 0.2]) == (0.2, 0.2, 0.2)


def test_curves_figure_bands_only_over_two_or_more_seeds_and_never_below_zero(drawn):
    fig = figures.curves_figure(_curves({"ic": 3, "gc": 1}), "d", ["w2"], ["ic", "gc"])
    _labelled(fig)
    ax = fig.axes[0]
    bands = _bands(ax)
    assert len(bands) == 1  # IC's 3 seeds; GC's single seed is a line only
    lows = np.concatenate([p.vertices[:, 1] for b in bands for p in b.get_paths()])
    assert lows.min() >= 0.002 > 0
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["IC (mean over 3 seeds)", "GC (1 seed, no band)"]
    assert "95% percentile-bootstrap interval" in fig.get_suptitle()
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # outside the panel: it covers no data


def test_figures_are_bitwise_reproducible():
    t = _curves({"ic": 3, "gc": 2})
    assert figures.curves_figure(t, "d", ["w2"], ["ic", "gc"]) == figures.curves_figure(t, "d", ["w2"], ["ic", "gc"])


def test_mu_sweep_figure_shows_every_mu_with_its_coupling(drawn):
    t = _curves({"ic": 3, "gc_mu03": 3, "gc": 3, "gc_mu1": 3})
    sweep = t.assign(mu=t.coupling.map({"ic": 0.0, "gc_mu03": 0.3, "gc": 0.5, "gc_mu1": 1.0}))
    fig = figures.mu_sweep_figure(sweep, "w2")
    _labelled(fig)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == [f"mu = {m} ({c}) (mean over 3 seeds)" for m, c in
                      (("0", "ic"), ("0.3", "gc_mu03"), ("0.5", "gc"), ("1", "gc_mu1"))]
    colors = {tuple(line.get_color()) if not isinstance(line.get_color(), str) else line.get_color()
              for line in fig.axes[0].get_lines()}
    assert len(colors) == 4  # one distinct colour per mu
    assert sorted(fig.axes[1].get_xticks()) == [0.0, 0.3, 0.5, 1.0]


def _record(dim: int) -> list[dict]:
    floor = np.finfo(np.float64).eps * dim
    rows = []
    for name, exact in (("IC", [2.8e-28, 0.5 * floor, 10 * floor, 1.0]), ("OT", [None] * 4)):
        for t, ex in zip((0.02, 0.1, 0.5, 1.0), exact):
            rows.append({"coupling": name, "t": t, "estimator": 50.0 / (1 + t), "exact": ex,
                         "relative_error": None if ex is None or ex < 1e-3 else 0.1})
    return rows


def test_discrepancy_figure_marks_exact_values_below_float64_resolution(drawn):
    dim = 64
    floor = np.finfo(np.float64).eps * dim
    fig = figures.discrepancy_figure(_record(dim), "digits", dim, seed=0)
    _labelled(fig)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    below = lines["IC: exact below float64 resolution (2 t), drawn at the floor"]
    assert list(below.get_xdata()) == [0.02, 0.1] and set(below.get_ydata()) == {floor}
    assert below.get_markerfacecolor() == "none"  # open markers: not a measured value
    exact = lines["IC: exact"]
    assert list(exact.get_ydata()) == [10 * floor, 1.0]  # the values above the floor, unclipped
    assert any(label.startswith("float64 resolution eps * d = 1.4e-14") for label in lines)
    # no floor line where nothing is below it (two_gaussians' exact values are all numbers)
    fig2 = figures.discrepancy_figure([r | {"exact": 1.0 if r["exact"] is not None else None} for r in _record(2)],
                                      "two_gaussians", 2)
    assert not any("resolution" in line.get_label() for line in fig2.axes[0].get_lines())


class _Kernel:
    def perturb(self, x, s, z):
        return x + s[:, None] * z


class _Shrink(torch.nn.Module):
    """A 'predictor' f(x_t, t) = x_t / (1 + t)."""
    kernel = _Kernel()

    def forward(self, x, s):
        return x / (1 + s[:, None])


def _two_modes(n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(0)
    y = np.where(np.arange(n) % 2 == 0, 0.5, -0.5) + 0.05 * rng.standard_normal(n)
    return np.stack([0.05 * rng.standard_normal(n), y], 1).astype(np.float32)


def test_gc_pairs_quotes_the_theory_tables_costs(drawn):
    costs = [{"coupling": c, "t": t, "cost": v, "se": se} for c, t, v, se in (
        ("IC", 0.0, 2.2613, 0.05), ("OT", 0.0, 1.33, 0.03), ("GC", 0.1, 1.9463, 0.04), ("GC", 0.5, 1.5269, 0.03),
        ("GC", 2.0, 1.2059, 0.03))]
    fig = figures.gc_pairs(_two_modes(), _Shrink(), costs, "the theory stage's", "run-s0")
    _labelled(fig)
    titles = [ax.get_title() for ax in fig.axes]
    assert "E||x - z||^2 = 2.261 ± 0.100" in titles[3]  # the table's number, +- 2 s.e.
    assert "c(2) = E||x_hat - z||^2 = 1.206 ± 0.060" in titles[2]
    bars = [p.get_height() for p in fig.axes[5].patches]
    assert bars == pytest.approx([2.2613, 1.33, 1.9463, 1.5269, 1.2059])
    assert "the theory stage's" in fig.get_suptitle()
    # without the table: the costs of the pairs drawn, said so
    fig = figures.gc_pairs(_two_modes(), _Shrink())
    assert "the 256 pairs drawn here" in fig.get_suptitle()
    x = torch.from_numpy(_two_modes()[:256])
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert f"{float(((x - z) ** 2).sum(1).mean()):.3f}" in fig.axes[3].get_title()


class _Encoder(torch.nn.Module):
    def forward(self, x):
        return x * 2, torch.full_like(x, 0.5)


def test_vct_fig1_has_a_row_per_seed_with_the_measured_numbers_and_the_counted_band(drawn):
    data = _two_modes()
    runs = [{"seed": s, "samples": {"IC": data * 0.5, "VC": data}, "between_modes": {"IC": 0.05 + s, "VC": 0.06},
             "mode_accuracy": 0.69, "encoder": _Encoder()} for s in (0, 1)]
    fig = figures.vct_fig1(data, runs, n=100)
    _labelled(fig)
    assert len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("IC, seed 0: measured between-mode fraction 5.0%")
    assert "seed 1: measured between-mode fraction 6.0%\nVC posterior mode accuracy 0.690" in titles[4]
    assert "measured mode accuracy 0.690" in titles[5]
    assert "2 seeds" in fig.get_suptitle()
    ax = fig.axes[0]
    band = next(p for p in ax.patches if p.get_label().startswith("counted as between"))
    fig.canvas.draw()
    (_, y0), (_, y1) = ax.transData.inverted().transform(band.get_window_extent().get_points())
    assert (y0, y1) == pytest.approx((-0.25, 0.25), abs=0.01)


def test_kl_scale_figure_draws_seed_intervals_per_kl_scale(drawn):
    rng = np.random.default_rng(0)
    runs = pd.DataFrame([{"dataset": "two_gaussians", "objective": "ict", "kl_scale": k, "seed": s,
                          "mode_accuracy": 0.9 / k ** 0.1, "aggregate_var_min": 0.1 * k ** 0.5,
                          "aggregate_var_max": 0.2 * k ** 0.5, "w2": 0.1 + 0.02 * rng.random(),
                          "between_modes": 0.05 * rng.random()} for k in (0.3, 3.0, 30.0) for s in range(3)])
    fig = figures.kl_scale_figure(runs, None, 3.0, 0.6)
    _labelled(fig)
    assert "seeds per kl_scale: 0.3: 3, 3: 3, 30: 3" in fig.get_suptitle()
    between = fig.axes[3]
    (drawn_bars,) = between.containers
    line, _, (bars,) = drawn_bars.lines
    assert drawn_bars.get_label() == "fraction between the modes" and list(line.get_xdata()) == [0.3, 3.0, 30.0]
    lows = [seg[:, 1].min() for seg in bars.get_segments()]
    values = runs.groupby("kl_scale").between_modes
    assert len(lows) == 3 and min(lows) >= values.min().min() >= 0  # within the seeds: never below 0


def test_theory_figures_label_everything(drawn):
    trans = [{"coupling": "IC", "t": 0.0, "cost": 2.0, "se": 0.1}, {"coupling": "GC", "t": 0.1, "cost": 1.5, "se": 0.1},
             {"coupling": "GC", "t": 1.0, "cost": 1.2, "se": 0.1}]
    fig = figures.transport_figure(trans, "d", seed=0, n=2048)
    _labelled(fig)
    assert "runs of seed 0" in fig.axes[0].get_title()
    thm = [{"N": n, "scaled": 1.0, "scaled_se": 0.1, "limit": 1.1, "limit_se": 0.05} for n in (2, 4, 8)]
    fig = figures.theorem1_figure(thm, "d", seed=0)
    _labelled(fig)
    assert "± 2 s.e." in " ".join(fig.axes[0].get_legend_handles_labels()[1])


def test_ablations_figure_png_keeps_its_panels_side_by_side():
    from ctcoupling.results import evidence

    t = _curves({"ic": 3, "gc": 3})
    ab = {"dataset": "d", "objective": "ict", "coupling": "gc", "ref_objective": "ict", "ref_coupling": "ic",
          "seeds": [0, 1, 2], "change": {"coupling": ("gc", "ic")}}
    png = figures.ablations_figure(t, [ab, ab], {"d": "w2"}, evidence.describe_change)
    height, width, _ = image.imread(io.BytesIO(png)).shape
    assert width > 1.8 * height


def test_samples_figure_titles_each_panel_with_its_run_and_labels_the_axes(monkeypatch):
    import matplotlib.pyplot as plt

    from ctcoupling.config import params as P
    from ctcoupling.results import runs

    monkeypatch.setattr(runs, "_png", lambda fig: fig)
    params = P.load("params/default.yaml")
    two_d = [e for e in P.experiments(params) if P.is_2d(params, e.dataset)]
    rng = np.random.default_rng(0)
    points = {e.name: rng.standard_normal((64, 2)) * 0.3 for e in two_d}
    refs = {ds: rng.standard_normal((64, 2)) * 0.3 for ds in {e.dataset for e in two_d}}
    fig = runs.samples_figure(params, points, refs)
    try:
        _labelled(fig)
        titles = [ax.get_title() for ax in fig.axes]
        assert "two_gaussians\nict / ic, seed 0, 1-step" in titles
        assert all(ax.get_legend() is None for ax in fig.axes) and fig.legends  # one legend, off the panels
    finally:
        plt.close(fig)
