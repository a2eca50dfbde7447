"""EDM2's magnitude-preserving U-Net (Karras et al. 2024, "Analyzing and Improving the Training
Dynamics of Diffusion Models", Fig. 21 and Appendix B), in the form sony/vct trains on ImageNet 64
(networks/networks_edm2.py `EDM2`: separate in/out channel counts, dropout only where the feature
resolution is at most `dropout_res`).

Written from the paper's equations, read side by side with NVlabs/edm2 training/networks_edm2.py and
sony/vct's copy; module and parameter names follow theirs, so state dicts line up with EDM2's
published weights. The code is our own. Every layer keeps activations and weights at unit magnitude:
- weights are normalised on every use, and in training mode also rewritten normalised in place
  ("forced weight normalisation", eq. 66), which `frozen_weights` switches off for a pass that must
  not touch the weights (a consistency objective's teacher pass, as sony/vct models/ecm.py does);
- sums, concatenations and SiLU are rescaled to keep unit variance (eqs. 81, 88, 103);
- the noise level enters as magnitude-preserving Fourier features (eq. 75), the class label as a
  one-hot vector scaled by sqrt(label_dim), mixed with the noise embedding by an mp-sum.
The output gain starts at 0, so the network outputs exactly 0 at initialisation.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.nn import functional as F


def normalize(x: torch.Tensor, dim=None, eps: float = 1e-4) -> torch.Tensor:
    """x scaled to unit mean square over `dim` (all but the first by default), eps-regularised."""
    dim = list(range(1, x.ndim)) if dim is None else dim
    # at least float32 (EDM2: the norm of bf16 activations in float32); float64 stays float64 (sCT's tests)
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.promote_types(x.dtype, torch.float32))
    norm = torch.add(eps, norm, alpha=math.sqrt(norm.numel() / x.numel()))
    return x / norm.to(x.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU divided by its output magnitude for unit-normal input (eq. 81)."""
    return F.silu(x) / 0.596


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """(1 - t) a + t b, rescaled to unit magnitude for independent unit inputs (eq. 88)."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: torch.Tensor, b: torch.Tensor, dim: int = 1, t: float = 0.5) -> torch.Tensor:
    """Concatenation whose parts contribute in the ratio (1 - t) : t, at unit overall magnitude (eq. 103)."""
    na, nb = a.shape[dim], b.shape[dim]
    c = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    return torch.cat([a * (c / math.sqrt(na) * (1 - t)), b * (c / math.sqrt(nb) * t)], dim=dim)


def resample(x: torch.Tensor, taps=(1, 1), mode: str = "keep") -> torch.Tensor:
    """2x down- or upsampling with a separable FIR filter of unit gain, depthwise; 'keep' passes x."""
    if mode == "keep":
        return x
    f = torch.as_tensor(taps, dtype=torch.float32, device=x.device)
    f = (torch.outer(f, f) / f.sum().square())[None, None].to(x.dtype)
    c, pad = x.shape[1], (len(taps) - 1) // 2
    if mode == "down":
        return F.conv2d(x, f.tile(c, 1, 1, 1), groups=c, stride=2, padding=pad)
    return F.conv_transpose2d(x, (4 * f).tile(c, 1, 1, 1), groups=c, stride=2, padding=pad)


class MPFourier(nn.Module):
    """cos(2 pi (f c_noise + phi)) sqrt(2) with fixed random frequencies f ~ N(0, bandwidth^2) and
    phases phi ~ U(0, 1) (eq. 75): unit magnitude for any noise level."""

    def __init__(self, num_channels: int, bandwidth: float = 1.0):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * torch.randn(num_channels) * bandwidth)
        self.register_buffer("phases", 2 * math.pi * torch.rand(num_channels))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        wide = torch.promote_types(c_noise.dtype, torch.float32)  # float32, or float64 for float64 input
        y = torch.outer(c_noise.to(wide), self.freqs.to(wide)) + self.phases.to(wide)
        return (y.cos() * math.sqrt(2)).to(c_noise.dtype)


class MPConv(nn.Module):
    """A convolution (kernel [k, k]) or fully connected layer (kernel []) with weights normalised per
    output channel on every use and scaled by gain / sqrt(fan_in) (eq. 47); training mode also writes
    the normalised weights back (forced weight normalisation, eq. 66) unless `force_wn` is off."""

    def __init__(self, in_channels: int, out_channels: int, kernel: list[int]):
        super().__init__()
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *kernel))
        self.force_wn = True

    def forward(self, x: torch.Tensor, gain=1) -> torch.Tensor:
        w = self.weight.to(torch.float32)
        if self.training and self.force_wn:
            with torch.no_grad():
                self.weight.copy_(normalize(w))
        w = normalize(w) * (gain / math.sqrt(w[0].numel()))
        w = w.to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return F.conv2d(x, w, padding=w.shape[-1] // 2)


@contextlib.contextmanager
def frozen_weights(module: nn.Module):
    """Within the block, MPConv layers of `module` do not rewrite their weights (forced weight
    normalisation off): sony/vct models/ecm.py runs the teacher pass so. A no-op for other networks."""
    layers = [m for m in module.modules() if isinstance(m, MPConv)]
    before = [m.force_wn for m in layers]
    for m in layers:
        m.force_wn = False
    try:
        yield
    finally:
        for m, flag in zip(layers, before):
            m.force_wn = flag


class Block(nn.Module):
    """Encoder ('enc') or decoder ('dec') block of Fig. 21: resample, (enc: 1x1 skip projection and
    pixel norm), a residual branch modulated by the embedding, an mp-sum with the main branch, optional
    self-attention with pixel-normalised q, k, v, and activations clipped at +-clip_act."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, flavor: str = "enc",
                 resample_mode: str = "keep", resample_filter=(1, 1), attention: bool = False,
                 channels_per_head: int = 64, dropout: float = 0.0, res_balance: float = 0.3,
                 attn_balance: float = 0.3, clip_act: float | None = 256):
        super().__init__()
        assert flavor in ("enc", "dec"), flavor
        self.out_channels, self.flavor = out_channels, flavor
        self.resample_filter, self.resample_mode = tuple(resample_filter), resample_mode
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout, self.res_balance, self.attn_balance, self.clip_act = dropout, res_balance, attn_balance, clip_act
        self.emb_gain = nn.Parameter(torch.zeros([]))
        self.conv_res0 = MPConv(out_channels if flavor == "enc" else in_channels, out_channels, kernel=[3, 3])
        self.emb_linear = MPConv(emb_channels, out_channels, kernel=[])
        self.conv_res1 = MPConv(out_channels, out_channels, kernel=[3, 3])
        self.conv_skip = MPConv(in_channels, out_channels, kernel=[1, 1]) if in_channels != out_channels else None
        self.attn_qkv = MPConv(out_channels, 3 * out_channels, kernel=[1, 1]) if self.num_heads else None
        self.attn_proj = MPConv(out_channels, out_channels, kernel=[1, 1]) if self.num_heads else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = resample(x, self.resample_filter, self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, dim=1)  # pixel norm

        y = self.conv_res0(mp_silu(x))
        scale = self.emb_linear(emb, gain=self.emb_gain) + 1
        y = mp_silu(y * scale[:, :, None, None].to(y.dtype))
        if self.training and self.dropout:
            y = F.dropout(y, p=self.dropout)
        y = self.conv_res1(y)

        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)

        if self.num_heads:
            x = mp_sum(x, self.attn_proj(self._attend(x)), t=self.attn_balance)
        if self.clip_act is not None:
            x = x.clip_(-self.clip_act, self.clip_act)
        return x

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over pixels; qkv channels are laid out as (head, c, 3), each pixel-normalised.
        Written as EDM2's einsums (their note: SDPA was not verified to give identical results)."""
        b, c, h, w = x.shape
        y = self.attn_qkv(x).reshape(b, self.num_heads, -1, 3, h * w)
        q, k, v = normalize(y, dim=2).unbind(3)
        a = torch.einsum("nhcq,nhck->nhqk", q, k / math.sqrt(q.shape[2])).softmax(dim=3)
        return torch.einsum("nhqk,nhck->nhcq", a, v).reshape(b, c, h, w)


class EDM2UNet(nn.Module):
    """F(x, c_noise, class_labels) -> (B, out_channels, H, W), EDM2's U-Net (Fig. 21).

    Per level of channel_mult: an encoder of num_blocks blocks (after a stem conv at the top level,
    after a downsampling block below it), then a decoder of an upsampling block (or, at the lowest
    level, two blocks, the first with attention) and num_blocks + 1 blocks that each take one encoder
    output by mp-concatenation. A constant-1 channel is appended to the input. Dropout applies only
    where the feature resolution is at most `dropout_res` (sony/vct's EDM2; None: everywhere).
    """

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 model_channels: int = 192, channel_mult=(1, 2, 3, 4), channel_mult_noise: int | None = None,
                 channel_mult_emb: int | None = None, num_blocks: int = 3, attn_resolutions=(16, 8),
                 label_balance: float = 0.5, concat_balance: float = 0.5, dropout: float = 0.0,
                 dropout_res: int | None = None, **block_kwargs):
        super().__init__()
        cblock = [model_channels * m for m in channel_mult]
        cnoise = model_channels * channel_mult_noise if channel_mult_noise is not None else cblock[0]
        cemb = model_channels * channel_mult_emb if channel_mult_emb is not None else max(cblock)
        self.img_resolution, self.label_dim = img_resolution, label_dim
        self.label_balance, self.concat_balance = label_balance, concat_balance
        self.out_gain = nn.Parameter(torch.zeros([]))

        self.emb_fourier = MPFourier(cnoise)
        self.emb_noise = MPConv(cnoise, cemb, kernel=[])
        self.emb_label = MPConv(label_dim, cemb, kernel=[]) if label_dim else None

        def blocks_at(res: int) -> dict:
            p = dropout if not dropout_res or res <= dropout_res else 0.0
            return dict(emb_channels=cemb, dropout=p, **block_kwargs)

        self.enc = nn.ModuleDict()
        cout = in_channels + 1
        for level, channels in enumerate(cblock):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = MPConv(cout, channels, kernel=[3, 3])
                cout = channels
            else:
                self.enc[f"{res}x{res}_down"] = Block(cout, cout, flavor="enc", resample_mode="down", **blocks_at(res))
            for idx in range(num_blocks):
                self.enc[f"{res}x{res}_block{idx}"] = Block(cout, channels, flavor="enc",
                                                            attention=res in attn_resolutions, **blocks_at(res))
                cout = channels

        self.dec = nn.ModuleDict()
        skips = [m.out_channels for m in self.enc.values()]
        for level, channels in reversed(list(enumerate(cblock))):
            res = img_resolution >> level
            if level == len(cblock) - 1:
                self.dec[f"{res}x{res}_in0"] = Block(cout, cout, flavor="dec", attention=True, **blocks_at(res))
                self.dec[f"{res}x{res}_in1"] = Block(cout, cout, flavor="dec", **blocks_at(res))
            else:
                self.dec[f"{res}x{res}_up"] = Block(cout, cout, flavor="dec", resample_mode="up", **blocks_at(res))
            for idx in range(num_blocks + 1):
                self.dec[f"{res}x{res}_block{idx}"] = Block(cout + skips.pop(), channels, flavor="dec",
                                                            attention=res in attn_resolutions, **blocks_at(res))
                cout = channels
        self.out_conv = MPConv(cout, out_channels, kernel=[3, 3])

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.emb_noise(self.emb_fourier(c_noise))
        if self.emb_label is not None:
            if class_labels is None:  # no label: the all-zero one, as sony/vct's preconditioning passes
                class_labels = torch.zeros(1, self.label_dim, device=x.device)
            labels = class_labels.to(emb.dtype) * math.sqrt(class_labels.shape[1])
            emb = mp_sum(emb, self.emb_label(labels), t=self.label_balance)
        emb = mp_silu(emb)

        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        skips = []
        for name, block in self.enc.items():
            x = block(x) if name.endswith("_conv") else block(x, emb)
            skips.append(x)
        for name, block in self.dec.items():
            if "_block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = block(x, emb)
        return self.out_conv(x, gain=self.out_gain)
