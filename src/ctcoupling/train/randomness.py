"""Per-sample randomness drawn for the global batch, of which each rank keeps its own rows.

Every draw of the training step (minibatch indices, noise, time indices) goes through one
`BatchRNG`, so a run's draws are the same function of the seed on 1 process or on N DDP ranks (each
rank gets distinct rows; batch-OT's `scope` says whether its pairing is too: couplings.BatchOTCoupling),
and its state can be saved and restored for a bitwise resume.
"""
from __future__ import annotations

import numpy as np
import torch


class BatchRNG:
    def __init__(self, seed: int, rank: int = 0, world: int = 1):
        self.gen = torch.Generator().manual_seed(seed)
        self.rank, self.world = rank, world

    def _rows(self, full: torch.Tensor) -> torch.Tensor:
        b = full.shape[0] // self.world
        return full[self.rank * b:(self.rank + 1) * b]

    def _global(self, shape) -> tuple[int, ...]:
        shape = tuple(shape)
        return (shape[0] * self.world, *shape[1:])

    def randn(self, *shape) -> torch.Tensor:
        return self._rows(torch.randn(self._global(shape), generator=self.gen))

    def rand(self, *shape) -> torch.Tensor:
        return self._rows(torch.rand(self._global(shape), generator=self.gen))

    def randint(self, high: int, n: int) -> torch.Tensor:
        return self._rows(torch.randint(high, (n * self.world,), generator=self.gen))

    def multinomial(self, probs: torch.Tensor, n: int) -> torch.Tensor:
        return self._rows(torch.multinomial(probs, n * self.world, replacement=True, generator=self.gen))

    def get_state(self) -> torch.Tensor:
        return self.gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)


class EpochSampler:
    """Minibatch indices drawn without replacement, one shuffle per epoch, as the official loaders draw
    them (a DataLoader with shuffle=True or DDP's DistributedSampler with set_epoch: sony/vct,
    consistency_GC; locuslab/ect walks EDM's InfiniteSampler, a shuffled order it keeps re-mixing).

    The examples form an endless stream of epochs, each a permutation of 0..n-1; step k takes the
    global batch at stream positions [k B, (k + 1) B), of which rank r keeps its b = B / world rows
    (ranks disjoint, together one global batch). Every batch is full: an epoch's remainder continues
    into the next epoch's permutation (a DataLoader without drop_last ends its epoch on a smaller batch).
    Epoch e's permutation is torch's DistributedSampler's (shuffle=True, seed=`base`, set_epoch(e)):
    randperm(n) from a generator seeded base + e, where `base` is a 32-bit seed drawn from the run's
    seed (so that runs of seeds s and s + 1 do not share shifted epoch orders, as base = s would make
    them). DistributedSampler deals each rank every world-th index; here ranks take contiguous blocks
    of the global batch (the same examples per global batch, and the rows BatchRNG gives the rank).
    The indices of a step are a function of the seed and the step: a resumed run draws them bitwise
    as an unbroken one, with nothing to save, and the batch generator's own draws (noise, times,
    flips) are untouched.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        if n < 1:
            raise ValueError("an empty training set has no minibatches")
        self.n, self.rank, self.world = n, rank, world
        self.base = int(np.random.SeedSequence([seed, 0x65706F6368]).generate_state(1, np.uint32)[0])
        self._perms: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        """Epoch `epoch`'s order of the examples (int64), cached for the epochs in use."""
        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.base + epoch)
            if len(self._perms) >= 4:  # steps move forward: drop the oldest epochs
                del self._perms[min(self._perms)]
            self._perms[epoch] = torch.randperm(self.n, generator=gen)
        return self._perms[epoch]

    def indices(self, step: int, b: int) -> torch.Tensor:
        """This rank's b example indices for step `step` (0-based) of a global batch of b x world."""
        start = (step * self.world + self.rank) * b
        positions = torch.arange(start, start + b)
        epochs = positions // self.n
        out = torch.empty(b, dtype=torch.int64)
        for e in epochs.unique().tolist():
            at = epochs == e
            out[at] = self.permutation(e)[positions[at] - e * self.n]
        return out
