"""docs/architecture.svg: the package's layers, their modules, and one params value's way through them.

    python docs/architecture.py        # rewrites docs/architecture.svg (deterministic: no date, fixed ids)

The layers and their modules are read from the package (each folder's docstring says `Layer i of n`;
tests/test_layers.py holds the folders to it); the numbered path is the one docs/architecture.md
walks through: a coupling's knob in params/default.yaml to the claims it decides."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "ctcoupling"

# (step, from (folder, module) or a file, to, label): the path of `couplings.gc.mu` (docs/architecture.md)
PATH = [
    ("params/default.yaml", ("config", "params"), "load, validate, expand the grid (experiments)"),
    (("config", "params"), ("pipeline", "dag"), "one train stage per run, with its params keys"),
    (("pipeline", "dag"), "dvc.yaml / Snakefile", "the same DAG for Snakemake and DVC"),
    (("root", "cli"), ("pipeline", "stages"), "a job runs `ctcoupling train --experiment EXP`"),
    (("pipeline", "stages"), ("train", "training"), "reads files, calls the pure loop: config + arrays"),
    (("train", "training"), ("train", "couplings"), "GC forms the pairs with probability mu"),
    (("train", "training"), ("core", "artifacts"), "the checkpoint, written atomically with provenance"),
    (("core", "artifacts"), "runs/EXP/model.pt", "runs/EXP/model.pt (DVC-cached)"),
    (("pipeline", "stages"), ("measure", "fidelity"), "the evaluate stage scores samples (FID)"),
    (("pipeline", "stages"), ("results", "evidence"), "the report stage: paired tests, Holm, verdicts"),
    (("results", "evidence"), "analysis/claims.md", "analysis/claims.md (committed)"),
]


def layers() -> list[tuple[str, str, list[str]]]:
    """(folder, first docstring line, modules) bottom to top, then the package's root modules."""
    found = {}
    for init in PKG.glob("*/__init__.py"):
        text = init.read_text()
        m = re.search(r"Layer (\d+) of", text)
        if m:
            doc = text.split('"""')[1].split(":")[0]
            mods = sorted(p.stem for p in init.parent.glob("*.py") if p.stem != "__init__")
            found[int(m.group(1))] = (init.parent.name, doc, mods)
    root = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__",))
    return [found[i] for i in sorted(found)] + [("root", "The command line", root)]


def figure() -> plt.Figure:
    rows = layers()
    width, row_h = 15.0, 1.0
    fig, ax = plt.subplots(figsize=(width + 3.5, row_h * (len(rows) + 2.2)))
    ax.set_xlim(-3.2, width + 5.2)
    ax.set_ylim(-1.4, len(rows) + 0.4)
    ax.axis("off")
    where = {}
    for i, (folder, doc, mods) in enumerate(rows):
        y = i
        ax.add_patch(plt.Rectangle((0, y - 0.38), width - 1.6, 0.76, fc="#f3f6fa" if i % 2 else "#e8eef6",
                                   ec="#7b8ba3", lw=0.8))
        ax.text(-0.15, y + 0.12, f"{folder}/" if folder != "root" else "ctcoupling/", ha="right", va="center",
                fontsize=10, weight="bold", family="monospace")
        ax.text(-0.15, y - 0.2, f"layer {i + 1}" if folder != "root" else "top", ha="right", va="center",
                fontsize=7, color="#555")
        step = (width - 2.2) / max(len(mods), 1)
        for k, m in enumerate(mods):
            x = 0.25 + step * (k + 0.5)
            where[folder, m] = (x, y)
            ax.text(x, y, f"{m}.py", ha="center", va="center", fontsize=8, family="monospace",
                    bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="#9aa", lw=0.6))
    files = {"params/default.yaml": (-2.2, len(rows) - 0.1), "dvc.yaml / Snakefile": (width + 1.2, len(rows) - 0.1),
             "runs/EXP/model.pt": (-2.2, -0.95), "analysis/claims.md": (width + 1.2, -0.95)}
    for name, (x, y) in files.items():
        where[name] = (x, y)
        ax.text(x, y, name, ha="center", va="center", fontsize=8, family="monospace",
                bbox=dict(boxstyle="square,pad=0.3", fc="#fff4d6", ec="#c9a227", lw=0.8))
    for n, (src, dst, label) in enumerate(PATH, 1):
        (x0, y0), (x1, y1) = where[src], where[dst]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="-|>", color="#c0392b", lw=1.1,
                    shrinkA=12, shrinkB=12, connectionstyle="arc3,rad=0.08"))
        f = 0.35 if n % 2 else 0.6  # the step's number on its arrow, staggered so that numbers do not meet
        ax.text(x0 + f * (x1 - x0), y0 + f * (y1 - y0), str(n), fontsize=7.5, color="white", weight="bold",
                ha="center", va="center", bbox=dict(boxstyle="circle,pad=0.2", fc="#c0392b", ec="none"))
    ax.text(width - 0.3, len(rows) - 1.2, "\n".join(f"{n:>2}  {label}" for n, (_, _, label) in enumerate(PATH, 1)),
            fontsize=7.5, family="monospace", va="top", ha="left", color="#7a2318",
            bbox=dict(boxstyle="round,pad=0.5", fc="#fdf2f0", ec="#c0392b", lw=0.6))
    ax.set_title("ctcoupling's layers (a module imports only from its own folder and those below; "
                 "tests/test_layers.py)\nred: the way of params couplings.gc.mu from params/default.yaml to "
                 "analysis/claims.md (docs/architecture.md)", fontsize=10)
    fig.tight_layout()
    return fig


def main(out: Path = ROOT / "docs" / "architecture.svg") -> int:
    plt.rcParams.update({"svg.hashsalt": "ctcoupling", "svg.fonttype": "none"})  # text stays text
    fig = figure()
    tmp = out.with_suffix(".tmp" + out.suffix)
    fig.savefig(tmp, format=out.suffix[1:], metadata={"Date": None} if out.suffix == ".svg" else None, dpi=110)
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "docs" / "architecture.svg"))
