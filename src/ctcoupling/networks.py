"""Networks F(x, c_noise): an MLP with a time embedding for low-dimensional data."""
from __future__ import annotations

import math

import torch
from torch import nn


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of the scalar noise level (DDPM++ 'positional')."""

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        self.dim, self.max_positions = dim, max_positions

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        freqs = torch.arange(self.dim // 2, dtype=torch.float32, device=c_noise.device) / (self.dim // 2)
        freqs = (1 / self.max_positions) ** freqs
        arg = c_noise.float()[:, None] * freqs[None] * 1000  # EDM scales c_noise into position units
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class MLP(nn.Module):
    """x (B, ...) flattened, concatenated with an embedding of c_noise, through `depth` SiLU layers."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 4, emb_dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.emb = nn.Sequential(PositionalEmbedding(emb_dim), nn.Linear(emb_dim, hidden), nn.SiLU())
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden)) for _ in range(depth)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        h = self.inp(x.reshape(shape[0], -1)) + self.emb(c_noise)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).reshape(shape)


def build(spec: dict, data_shape: tuple[int, ...]) -> nn.Module:
    """A network from its params spec (`networks.<name>`) for data of the given per-sample shape."""
    if spec["kind"] == "mlp":
        return MLP(math.prod(data_shape), spec["hidden"], spec["depth"], spec["emb_dim"], spec["dropout"])
    raise ValueError(f"unknown network kind {spec['kind']!r}")


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
