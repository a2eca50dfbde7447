"""The process tree from /proc, for tests that kill what they started (torchrun's ranks, SLURM's daemons
and job steps), whatever sessions those processes put themselves in."""
import os


def ppid_map() -> dict[int, int]:
    """pid -> parent pid of every live process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return out


def with_descendants(roots: set[int]) -> set[int]:
    """roots and every process below them (never this process)."""
    ppid = ppid_map()
    out, frontier = set(roots), set(roots)
    while frontier:
        frontier = {p for p, pp in ppid.items() if pp in frontier and p not in out}
        out |= frontier
    out.discard(os.getpid())
    return out
