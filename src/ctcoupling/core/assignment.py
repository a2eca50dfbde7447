"""The exact minibatch assignment of batch-OT, and a solver process that computes it off the
training step's critical path (issue 12). Free of torch: the solver process imports this module only.

`solve(cost)` is the permutation minimising sum_i cost[i, pi(i)]: POT's exact network simplex
(`ot.emd`'s solver; POT is the library of OT flow matching and of sony/vct's OT sampler) on uniform
weights, whose optimal vertex is a permutation matrix (Birkhoff), read off by argmax. It is faster
than scipy's Hungarian `linear_sum_assignment` at every size of the suite (`make bench`:
benchmarks/test_train_step.py, 2-D, digits and CIFAR-10 minibatches); scipy's is the fallback should
the solver stop short of optimality or a plan not be a permutation. The solver is called without
`ot.emd`'s Python wrapper (backend detection, marginal checks), which gives the same plan, bit for bit
(tests/test_couplings.py).

`Solver` runs `solve` in a child process, fed through a shared buffer with two slots, so that step
k+1's assignment is solved while step k trains. A process rather than a thread: measured here
(2 vCPUs), a worker thread slowed the training step beside it by 15-35 % even when it ran GIL-free C
code (the threads share one address space, and its allocations cost the other thread), where two
processes ran side by side at full speed. The child runs the same `solve` on the same bits, so the
permutation is the one the training process would compute in line.
"""
from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import tempfile
import weakref
from collections import deque

import numpy as np

OPTIMAL = 1  # the network simplex's result code for an optimal plan (POT ot/lp/emd_wrap.pyx, check_result)
MAX_ITER = 100_000  # ot.emd's default numItermax
_HEADER = struct.Struct("<BI")  # slot, n
# POT imports every array library it finds; the solver needs none of them (startup ~1 s instead of ~3 s).
_LIGHT_POT = {f"POT_BACKEND_DISABLE_{lib}": "1" for lib in ("PYTORCH", "JAX", "CUPY", "TENSORFLOW")}


def solve(cost: np.ndarray) -> np.ndarray:
    """pi minimising sum_i cost[i, pi(i)] over permutations (cost: n x n, float64)."""
    from ot.lp.emd_wrap import emd_c
    from scipy.optimize import linear_sum_assignment

    cost = np.ascontiguousarray(cost, dtype=np.float64)
    n = len(cost)
    weights = np.full(n, 1.0 / n)
    plan, _, _, _, code = emd_c(weights, weights, cost, MAX_ITER, 1, None, None)
    cols = plan.argmax(1)
    if code == OPTIMAL and np.array_equal(np.sort(cols), np.arange(n)) and \
            np.allclose(plan[np.arange(n), cols], 1.0 / n):
        return cols
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def _slot_bytes(n_max: int) -> int:
    return 8 * n_max * n_max + 8 * n_max  # the cost matrix, then the permutation


class Solver:
    """A child process solving assignments of up to n_max points, two at a time in flight, in order.

    `submit(cost)` copies the cost matrix into a free slot and returns at once; `result()` returns
    the permutation of the oldest submission, waiting for it if need be. A child that cannot start or
    dies raises OSError here; the caller solves in line instead."""

    def __init__(self, n_max: int):
        self.n_max, self.size = n_max, _slot_bytes(n_max)
        self._file = tempfile.TemporaryFile(prefix="ctcoupling-ot-")
        self._file.truncate(2 * self.size)
        self._buf = mmap.mmap(self._file.fileno(), 2 * self.size)
        fd = self._file.fileno()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ctcoupling.core.assignment", str(fd), str(n_max)], pass_fds=(fd,),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **_LIGHT_POT}, bufsize=0)
        self._pending: deque[tuple[int, int]] = deque()  # (slot, n), oldest first
        self._next = 0
        weakref.finalize(self, _stop, self._proc, self._buf, self._file)

    def _view(self, slot: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        base = slot * self.size
        cost = np.ndarray((n, n), np.float64, self._buf, base)
        perm = np.ndarray((n,), np.int64, self._buf, base + 8 * self.n_max * self.n_max)
        return cost, perm

    def submit(self, cost: np.ndarray) -> None:
        n = len(cost)
        if n > self.n_max or len(self._pending) == 2:
            raise ValueError(f"at most 2 assignments of <= {self.n_max} points in flight")
        slot = self._next
        self._view(slot, n)[0][...] = cost
        self._proc.stdin.write(_HEADER.pack(slot, n))
        self._pending.append((slot, n))
        self._next = 1 - slot

    def result(self) -> np.ndarray:
        slot, n = self._pending.popleft()
        if self._proc.stdout.read(1) != b"d":
            raise OSError(f"the OT solver process exited (code {self._proc.poll()})")
        return self._view(slot, n)[1].copy()

    def in_flight(self) -> int:
        return len(self._pending)


def _stop(proc: subprocess.Popen, buf: mmap.mmap, file) -> None:
    try:
        proc.stdin.close()  # the child exits at end of input
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
    buf.close()
    file.close()


def _serve(fd: int, n_max: int) -> None:
    """The child: read (slot, n), solve the slot's cost matrix, write the permutation, answer b'd'."""
    size = _slot_bytes(n_max)
    buf = mmap.mmap(fd, 2 * size)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while header := inp.read(_HEADER.size):
        slot, n = _HEADER.unpack(header)
        base = slot * size
        cost = np.ndarray((n, n), np.float64, buf, base)
        np.ndarray((n,), np.int64, buf, base + 8 * n_max * n_max)[...] = solve(cost)
        out.write(b"d")
        out.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
