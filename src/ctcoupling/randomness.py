"""Per-sample randomness drawn for the global batch, of which each rank keeps its own rows.

Every draw of the training step (minibatch indices, noise, time indices) goes through one
`BatchRNG`, so a run is the same function of the seed on 1 process or on N DDP ranks (each rank
gets distinct rows), and its state can be saved and restored for a bitwise resume.
"""
from __future__ import annotations

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
