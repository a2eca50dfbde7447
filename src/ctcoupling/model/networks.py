"""Networks F(x, c_noise[, class_labels]) -> same shape as x.

An MLP with a time embedding for low-dimensional data, Song et al.'s U-Net (DDPM++ / NCSN++)
in the form of EDM (Karras et al. 2022), re-implemented here with the same parameter layout and
parameter counts as EDM's `SongUNet`, and EDM2's magnitude-preserving U-Net (edm2.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ctcoupling.model.edm2 import EDM2UNet


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding [cos, sin] of the scalar noise level (DDPM++ 'positional')."""

    def __init__(self, dim: int, max_positions: int = 10000, endpoint: bool = False, scale: float = 1000):
        super().__init__()
        self.dim, self.max_positions, self.endpoint, self.scale = dim, max_positions, endpoint, scale

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        wide = torch.promote_types(c_noise.dtype, torch.float32)  # float32, or float64 for float64 input
        freqs = torch.arange(half, dtype=wide, device=c_noise.device) / (half - int(self.endpoint))
        freqs = (1 / self.max_positions) ** freqs
        arg = c_noise.to(wide)[:, None] * freqs[None] * self.scale  # the MLP scales c_noise into position units
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class MLP(nn.Module):
    """x (B, ...) flattened, plus an embedding of c_noise, through `depth` residual SiLU layers.
    Returns x's shape, or (B, out_dim) when out_dim differs from x's size (VC's encoder: 2x)."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 4, emb_dim: int = 64, dropout: float = 0.0,
                 out_dim: int | None = None):
        super().__init__()
        self.emb = nn.Sequential(PositionalEmbedding(emb_dim), nn.Linear(emb_dim, hidden), nn.SiLU())
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden)) for _ in range(depth)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, out_dim or dim))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        h = self.inp(x.reshape(shape[0], -1)) + self.emb(c_noise)
        for block in self.blocks:
            h = h + block(h)
        out = self.out(h)
        return out.reshape(shape) if out.shape[1] == math.prod(shape[1:]) else out


# ---------------------------------------------------------------------------------------------
# Song et al.'s U-Net (DDPM++ / NCSN++) in EDM's form. Module names follow EDM's SongUNet, so
# state dicts line up with EDM checkpoints; the code is our own.


def weight_init(shape: list[int], mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    """A random tensor of the given shape from one of the standard fan-based initialisations."""
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (2 * torch.rand(*shape) - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (2 * torch.rand(*shape) - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ValueError(f"unknown init mode {mode!r}")


class Linear(nn.Module):
    """Fully connected layer whose weight is initialised by `weight_init`, scaled by init_weight."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init_mode: str = "kaiming_normal", init_weight: float = 1, init_bias: float = 0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(weight_init([out_features, in_features], **fans) * init_weight)
        self.bias = nn.Parameter(weight_init([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Conv2d(nn.Module):
    """Square convolution with optional 2x FIR up/downsampling; kernel=0 means resampling only."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True,
                 up: bool = False, down: bool = False, resample_filter=(1, 1), fused_resample: bool = False,
                 init_mode: str = "kaiming_normal", init_weight: float = 1, init_bias: float = 0):
        super().__init__()
        assert not (up and down), "a layer resamples in one direction at most"
        assert not (fused_resample and up), "only downsampling has a fused (convolve-first) form"
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fans = dict(mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel)
        shape = [out_channels, in_channels, kernel, kernel]
        self.weight = nn.Parameter(weight_init(shape, **fans) * init_weight) if kernel else None
        self.bias = nn.Parameter(weight_init([out_channels], **fans) * init_bias) if kernel and bias else None
        f = torch.as_tensor(resample_filter, dtype=torch.float32)
        f = torch.outer(f, f)[None, None] / f.sum().square()  # separable 2-D filter with unit gain
        self.register_buffer("resample_filter", f if up or down else None)

    def _resample(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        """Depthwise FIR 2x upsampling (transposed, gain 4) or 2x downsampling of x."""
        c, f = x.shape[1], self.resample_filter.to(x.dtype)
        if self.up:
            return F.conv_transpose2d(x, (4 * f).tile(c, 1, 1, 1), groups=c, stride=2, padding=padding)
        return F.conv2d(x, f.tile(c, 1, 1, 1), groups=c, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (self.resample_filter.shape[-1] - 1) // 2 if self.resample_filter is not None else 0
        if self.fused_resample and self.down and w is not None:  # convolve at full resolution, then filter down
            x = self._resample(F.conv2d(x, w, padding=w_pad + f_pad), padding=0)
        else:
            if self.up or self.down:
                x = self._resample(x, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        return x if self.bias is None else x + self.bias[None, :, None, None]


class GroupNorm(nn.Module):
    """Group normalisation with up to 32 groups of at least 4 channels each."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4, eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class UNetBlock(nn.Module):
    """Residual block (norm-SiLU-conv, + embedding, norm-SiLU-dropout-conv, skip) with optional self-attention."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, up: bool = False, down: bool = False,
                 attention: bool = False, num_heads: int = 1, dropout: float = 0.0, skip_scale: float = 1.0,
                 eps: float = 1e-5, resample_filter=(1, 1), init: dict | None = None,
                 init_zero: dict | None = None, init_attn: dict | None = None):
        super().__init__()
        init = init or {}
        init_zero = init_zero if init_zero is not None else dict(init_weight=0)
        init_attn = init_attn if init_attn is not None else init
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_heads = num_heads if attention else 0
        self.dropout, self.skip_scale = dropout, skip_scale
        resample = dict(up=up, down=down, resample_filter=resample_filter)

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, **resample, **init)
        self.affine = Linear(emb_channels, out_channels, **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)
        # The shortcut is a 1x1 projection (resampled alongside) whenever the shape changes.
        changes = in_channels != out_channels or up or down
        self.skip = Conv2d(in_channels, out_channels, kernel=1, **resample, **init) if changes else None
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, 3 * out_channels, kernel=1, **init_attn)
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = F.silu(self.norm1(h + self.affine(emb)[:, :, None, None]))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        x = (h + (x if self.skip is None else self.skip(x))) * self.skip_scale
        if self.num_heads:
            x = (self.proj(self._attend(self.norm2(x))) + x) * self.skip_scale
        return x

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention over the pixels of x; qkv channels are interleaved as (head, c, 3)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b * self.num_heads, c // self.num_heads, 3, h * w).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return a.transpose(1, 2).reshape(b, c, h, w)


class FourierEmbedding(nn.Module):
    """Random Fourier features [cos, sin] of the scalar noise level (NCSN++ 'fourier')."""

    def __init__(self, dim: int, scale: float = 16):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        wide = torch.promote_types(c_noise.dtype, torch.float32)
        arg = c_noise.to(wide)[:, None] * (2 * math.pi * self.freqs.to(wide))[None]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class SongUNet(nn.Module):
    """Song et al.'s DDPM++ / NCSN++ U-Net in EDM's form: F(x, c_noise, class_labels) -> (B, out_channels, H, W).

    DDPM++: embedding_type='positional', channel_mult_noise=1, encoder_type='standard', resample_filter=[1, 1].
    NCSN++: embedding_type='fourier', channel_mult_noise=2, encoder_type='residual', resample_filter=[1, 3, 3, 1].
    num_blocks is the number of residual blocks per resolution, and dropout the dropout probability,
    each an int/float or one per level of channel_mult (consistency_GC edm_networks.py: CelebA 64's
    dropout [0, 0, 0.2, 0.2] acts on the encoder and decoder blocks of each level).
    """

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 model_channels: int = 128, channel_mult=(1, 2, 2, 2), channel_mult_emb: int = 4,
                 num_blocks=4, attn_resolutions=(16,), dropout: float = 0.10,
                 embedding_type: str = "positional", channel_mult_noise: int = 1, encoder_type: str = "standard",
                 decoder_type: str = "standard", resample_filter=(1, 1)):
        super().__init__()
        assert embedding_type in ("positional", "fourier"), embedding_type
        assert encoder_type in ("standard", "skip", "residual"), encoder_type
        assert decoder_type in ("standard", "skip"), decoder_type
        levels = len(channel_mult)
        blocks = [num_blocks] * levels if isinstance(num_blocks, int) else list(num_blocks)
        assert len(blocks) == levels, "num_blocks needs one entry per level of channel_mult"
        drops = [dropout] * levels if isinstance(dropout, (int, float)) else list(dropout)
        assert len(drops) == levels, "dropout needs one value, or one entry per level of channel_mult"
        assert img_resolution % 2 ** (levels - 1) == 0, "img_resolution must halve cleanly at every level"
        self.img_resolution, self.in_channels, self.out_channels = img_resolution, in_channels, out_channels
        self.label_dim = label_dim
        emb_channels, noise_channels = model_channels * channel_mult_emb, model_channels * channel_mult_noise
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        init_attn = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))
        block = dict(emb_channels=emb_channels, num_heads=1, skip_scale=math.sqrt(0.5), eps=1e-6,
                     resample_filter=resample_filter, init=init, init_zero=init_zero, init_attn=init_attn)

        # Mapping network: noise level (+ label) -> embedding shared by all blocks.
        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True, scale=1)
        else:
            self.map_noise = FourierEmbedding(noise_channels)
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        # Encoder: a stem conv, then per level (downsampling block +) residual blocks; 'aux' = input pyramid.
        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(cout, model_channels, kernel=3, **init)
                cout = model_channels
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, dropout=drops[level], **block)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, kernel=0, down=True,
                                                               resample_filter=resample_filter)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, kernel=1, **init)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(caux, cout, kernel=3, down=True, fused_resample=True,
                                                                   resample_filter=resample_filter, **init)
                    caux = cout
            for idx in range(blocks[level]):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions,
                                                                dropout=drops[level], **block)
        skips = [m.out_channels for name, m in self.enc.items() if "aux" not in name]

        # Decoder: a middle pair at the lowest resolution, then per level (upsampling block +) blocks that
        # each take one encoder skip; 'aux' = output head(s), one per level for decoder_type='skip'.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == levels - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, dropout=drops[level], **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, dropout=drops[level], **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, dropout=drops[level], **block)
            for idx in range(blocks[level] + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == blocks[level] and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, dropout=drops[level], **block)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < levels - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(out_channels, out_channels, kernel=0, up=True,
                                                             resample_filter=resample_filter)
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, kernel=3, **init_zero)

    def embed(self, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The block embedding of (c_noise, class_labels); missing labels count as the all-zero label."""
        emb = self.map_noise(c_noise)
        emb = torch.cat(emb.chunk(2, dim=1)[::-1], dim=1)  # [sin, cos], as in Song et al.
        if self.map_label is not None:
            if class_labels is None:
                class_labels = torch.zeros(len(c_noise), self.label_dim, device=c_noise.device)
            emb = emb + self.map_label(class_labels.to(emb.dtype) * math.sqrt(self.label_dim))
        return F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(c_noise, class_labels)

        skips, aux = [], x
        for name, m in self.enc.items():
            if "aux_down" in name:
                aux = m(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + m(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + m(aux)) / math.sqrt(2)
            else:
                x = m(x, emb) if isinstance(m, UNetBlock) else m(x)
                skips.append(x)

        out = h = None
        for name, m in self.dec.items():
            if "aux_up" in name:
                out = m(out)
            elif "aux_norm" in name:
                h = m(x)
            elif "aux_conv" in name:
                h = m(F.silu(h))
                out = h if out is None else out + h
            else:
                if "_block" in name:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = m(x, emb)
        return out


_SONGUNET_KEYS = {"out_channels", "label_dim", "model_channels", "channel_mult", "channel_mult_emb", "num_blocks",
                  "attn_resolutions", "dropout", "embedding_type", "channel_mult_noise", "encoder_type",
                  "decoder_type", "resample_filter"}
_EDM2_KEYS = {"out_channels", "label_dim", "model_channels", "channel_mult", "channel_mult_noise", "channel_mult_emb",
              "num_blocks", "attn_resolutions", "label_balance", "concat_balance", "dropout", "dropout_res",
              "channels_per_head", "res_balance", "attn_balance", "clip_act", "resample_filter"}
_UNETS = {"songunet": (SongUNet, _SONGUNET_KEYS), "edm2": (EDM2UNet, _EDM2_KEYS)}


def unet_kwargs(spec: dict, data_shape: tuple[int, ...]) -> dict:
    """U-Net keyword arguments from a 'songunet' or 'edm2' spec and the per-sample data shape (C, H, W)."""
    kind, known = spec["kind"], _UNETS[spec["kind"]][1]
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise ValueError(f"{kind} needs square images (C, H, W), got data shape {tuple(data_shape)}")
    unknown = set(spec) - known - {"kind"}
    if unknown:
        raise ValueError(f"unknown {kind} keys {sorted(unknown)} (known: {', '.join(sorted(known))})")
    c, h, _ = data_shape
    kwargs = {k: v for k, v in spec.items() if k in known}
    kwargs.setdefault("out_channels", c)
    return dict(img_resolution=h, in_channels=c, **kwargs)


def build(spec: dict, data_shape: tuple[int, ...], out_mult: int = 1) -> nn.Module:
    """A network from its params spec (`networks.<name>`) for data of the given per-sample shape;
    out_mult = 2 gives VC's encoder head (mu and s for every input dimension), started at ~0."""
    if spec["kind"] == "mlp":
        dim = math.prod(data_shape)
        net = MLP(dim, spec["hidden"], spec["depth"], spec["emb_dim"], spec["dropout"], out_dim=out_mult * dim)
        if out_mult != 1:
            nn.init.zeros_(net.out[-1].weight)
            nn.init.zeros_(net.out[-1].bias)
        return net
    if spec["kind"] in _UNETS:  # EDM's output layer starts at 1e-5 scale, EDM2's at exactly 0
        kwargs = unet_kwargs(spec, data_shape)
        kwargs["out_channels"] *= out_mult
        return _UNETS[spec["kind"]][0](**kwargs)
    raise ValueError(f"unknown network kind {spec['kind']!r}")


def label_dim(net: nn.Module) -> int:
    """The number of classes a network is conditioned on (0: unconditional)."""
    return getattr(net, "label_dim", 0)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
