"""StereoNet (Khamis et al., ECCV 2018, arXiv 1807.08865) in plain PyTorch.

One definition serves training (``training/``) and inference (``engine.py``).

Shapes and units
----------------
Inputs are rectified left/right images ``(B, C, H, W)``, normalised floats, with
H and W multiples of ``2**k`` (the engine pads). Every disparity the model returns
is in *pixels of the input resolution*, measured as ``x_left - x_right`` for the
left view and ``x_right - x_left`` negated, i.e. also positive, for the right view.

Defects of the public reference code that are fixed here (see shared/DESIGN.md):
the cost volume is built with tensor ops (no Python loop over disparities, no CPU
allocation) and the soft-argmin grid is ``arange(D) * 2**k`` rather than
``linspace(0, max, D)``, which is off by one step.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

_LEAK = 0.2


@dataclass(frozen=True)
class StereoNetConfig:
    """Architecture hyper-parameters; stored in every checkpoint."""

    in_channels: int = 3          # 1 (grey) or 3 (RGB)
    k: int = 3                    # number of stride-2 downsampling convs (cost volume at 1/2^k)
    max_disparity: int = 192      # searched range in full-resolution pixels, exclusive
    features: int = 32            # feature channels of the extractor and refiners
    refinement_levels: Optional[int] = None  # refiners, one per x2 step; None = k (to full res)
    # Where the cost volume's pixels sit: the strided 5x5 convolutions centre coarse pixel j on
    # input pixel 2^k j, not on 2^k j + (2^k - 1) / 2 as a plain bilinear upsampling assumes
    # (3.5 px off at k = 3). True resamples the coarse level on its real grid; False keeps the
    # plain upsampling of checkpoints trained with it.
    aligned_coarse: bool = False
    # What the refiners see besides the disparity and the reference image: StereoNet's refiners
    # see only the reference view, so they can sharpen edges but cannot measure a sub-pixel
    # error. True adds the other view warped by the current disparity, as its difference to
    # the reference (a photometric residual: with the image's gradient, a local shift).
    warp_refinement: bool = False
    # With warp_refinement, also the residuals at d +- 1..warp_offsets pixels of each level: a
    # small local cost curve, from which a refiner can tell in which direction and how far
    # the match lies (one residual at d gives only its size, times the image gradient).
    warp_offsets: int = 0

    def __post_init__(self) -> None:
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if not 1 <= self.k <= 5:
            raise ValueError(f"k must be in 1..5, got {self.k}")
        if self.max_disparity < 2 ** self.k * 2 or self.max_disparity % (2 ** self.k):
            raise ValueError(
                f"max_disparity must be a multiple of 2^k={2 ** self.k} and at least "
                f"{2 ** (self.k + 1)}, got {self.max_disparity}")
        if self.features < 4:
            raise ValueError(f"features must be >= 4, got {self.features}")
        if self.warp_offsets < 0 or (self.warp_offsets and not self.warp_refinement):
            raise ValueError(f"warp_offsets must be >= 0 and needs warp_refinement, got "
                             f"{self.warp_offsets} with warp_refinement={self.warp_refinement}")
        if self.refinement_levels is not None and not 0 <= self.refinement_levels <= self.k:
            raise ValueError(
                f"refinement_levels must be in 0..k={self.k}, got {self.refinement_levels}")

    @property
    def num_refiners(self) -> int:
        return self.k if self.refinement_levels is None else self.refinement_levels

    @property
    def residual_offsets(self) -> Tuple[int, ...]:
        """Offsets (pixels of a level) added to the disparity for the refiners' photometric
        residuals: 0 first (the warp_refinement channel of older checkpoints), then -1, +1, ..."""
        if not self.warp_refinement:
            return ()
        return (0,) + tuple(s * j for j in range(1, self.warp_offsets + 1) for s in (-1, 1))

    @property
    def refiner_inputs(self) -> int:
        """Image channels a refiner sees besides the disparity: the reference view and one
        residual image per offset."""
        return self.in_channels * (1 + len(self.residual_offsets))

    @property
    def candidates(self) -> int:
        """Number of disparity candidates D of the low-resolution cost volume."""
        return self.max_disparity // 2 ** self.k

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, object]) -> "StereoNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown StereoNet hyper-parameters: {sorted(unknown)}")
        return cls(**d)  # type: ignore[arg-type]


def resample(x: torch.Tensor, size: Tuple[int, int], *, src_stride: float, src_offset: float,
             dst_stride: float = 1.0) -> torch.Tensor:
    """Bilinear resampling of a (B, C, h, w) map whose pixel j is centred on input-resolution
    coordinate ``src_stride * j + src_offset`` onto the grid of ``size`` whose pixel i covers
    input pixels ``[dst_stride * i, dst_stride * (i + 1))`` (centre ``dst_stride * i +
    (dst_stride - 1) / 2``, the convention of ``F.interpolate(align_corners=False)`` and of
    image pyramids built with it). Values are unchanged (disparities stay in input pixels);
    outside the source grid the border value is held. With ``src_offset = (src_stride - 1) / 2``
    this is exactly ``F.interpolate(..., align_corners=False)``, which is then used."""
    h, w = size
    ratio = src_stride / dst_stride
    if abs(src_offset - (src_stride - 1) / 2) < 1e-9 and (h, w) == (x.shape[-2] * ratio, x.shape[-1] * ratio):
        if ratio == 1:
            return x
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    hs, ws = x.shape[-2:]

    def axis(n_dst: int, n_src: int) -> torch.Tensor:
        centres = dst_stride * torch.arange(n_dst, device=x.device, dtype=torch.float32) + (dst_stride - 1) / 2
        j = (centres - src_offset) / src_stride
        return 2.0 * j / max(n_src - 1, 1) - 1.0 if n_src > 1 else torch.zeros_like(j)

    gy, gx = axis(h, hs), axis(w, ws)
    grid = torch.stack([gx.view(1, w).expand(h, w), gy.view(h, 1).expand(h, w)], -1)
    grid = grid.unsqueeze(0).expand(x.shape[0], h, w, 2)
    # fp32 sampling positions and values: in bf16 a position near x = 640 is off by ~1 px
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=True).to(x.dtype)


def _conv_bn_lrelu(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(_LEAK, inplace=True),
    )


class ResBlock(nn.Module):
    """3x3 conv-BN-LReLU, 3x3 conv-BN, identity skip, LReLU (paper Fig. 2)."""

    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn_lrelu(ch, ch, dilation=dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(ch),
        )
        self.act = nn.LeakyReLU(_LEAK, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class FeatureExtractor(nn.Module):
    """K 5x5 stride-2 convs, 6 residual blocks, a final 3x3 conv: features at 1/2^K."""

    def __init__(self, cin: int, ch: int, k: int) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        for i in range(k):
            layers.append(nn.Conv2d(cin if i == 0 else ch, ch, 5, 2, 2))
        layers += [ResBlock(ch) for _ in range(6)]
        layers.append(nn.Conv2d(ch, ch, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def difference_cost_volume(ref: torch.Tensor, other: torch.Tensor, candidates: int,
                           direction: int = -1, *,
                           memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Feature-difference cost volume, vectorised over disparity.

    ``cost[b, c, d, y, x] = ref[b, c, y, x] - other[b, c, y, x + direction * d]``
    where that column exists, else 0. ``direction=-1`` matches a left reference
    against the right image (x_r = x_l - d); ``+1`` a right reference against the left.
    Returns ``(B, C, D, H, W)`` in ``memory_format`` (contiguous, or ``channels_last_3d`` for
    a filter whose weights are NDHWC). No Python loop over d: ``other`` is padded once
    and D shifted windows are taken with ``unfold`` (a view). At inference the difference is
    written straight into the output layout and the out-of-image triangle zeroed in place
    (two passes over the volume instead of subtract, mask-multiply and layout copy).
    """
    b, c, h, w = other.shape
    dmax = candidates - 1
    if direction < 0:
        padded = F.pad(other, (dmax, 0))  # column x - d lives at padded[x + dmax - d]
        windows = padded.unfold(3, w, 1).flip(3)   # (B, C, H, D, W): index d -> shift d
    else:
        padded = F.pad(other, (0, dmax))  # column x + d lives at padded[x + d]
        windows = padded.unfold(3, w, 1)
    shifted = windows.permute(0, 1, 3, 2, 4)         # (B, C, D, H, W) view
    cols = torch.arange(w, device=ref.device)
    shifts = torch.arange(candidates, device=ref.device)
    if direction < 0:
        invalid = cols.unsqueeze(0) < shifts.unsqueeze(1)         # x - d < 0
    else:
        invalid = cols.unsqueeze(0) + shifts.unsqueeze(1) >= w    # x + d >= w
    invalid = invalid.view(candidates, 1, w)
    if torch.is_grad_enabled() and (ref.requires_grad or other.requires_grad):
        # Training: out= and in-place ops do not record gradients; same values.
        return (ref.unsqueeze(2) - shifted).masked_fill(invalid, 0.0).contiguous(memory_format=memory_format)
    cost = torch.empty((b, c, candidates, h, w), dtype=torch.result_type(ref, other), device=ref.device,
                       memory_format=memory_format)
    torch.sub(ref.unsqueeze(2), shifted, out=cost)
    return cost.masked_fill_(invalid, 0.0)


def slice_cost_volume(ref: torch.Tensor, other: torch.Tensor, candidates: int,
                      direction: int = -1, *,
                      memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Same values as :func:`difference_cost_volume`, built from one slice, subtraction and
    zero pad per candidate and a ``stack``.

    Slower in eager torch (D separate passes), but every op has an ONNX equivalent, whereas
    torch's ONNX exporter cannot convert ``Tensor.unfold`` when the padded width is only known
    at run time (dynamic axes). Select it with ``StereoNet.cost_volume = "slices"``.
    Returns ``(B, C, D, H, W)``. ``d >= W`` is a Python branch, so a traced graph keeps the
    branches of its sample's width: ``onnx_export`` therefore traces dynamic-size graphs only
    from samples at least D columns wide.
    """
    w = ref.shape[-1]
    vols = [ref - other]
    for d in range(1, candidates):
        if d >= w:          # no column has a match d away: all zero, as in the unfold volume
            vols.append(torch.zeros_like(ref))
        elif direction < 0:  # ref[x] - other[x - d], zero where x - d < 0
            vols.append(F.pad(ref[..., d:] - other[..., :-d], (d, 0)))
        else:               # ref[x] - other[x + d], zero where x + d >= W
            vols.append(F.pad(ref[..., :-d] - other[..., d:], (0, d)))
    return torch.stack(vols, 2).contiguous(memory_format=memory_format)


#: ``StereoNet.cost_volume`` choices: the fast vectorised volume, and the exportable one.
COST_VOLUMES = {"unfold": difference_cost_volume, "slices": slice_cost_volume}


def weight_layout_3d(weight: torch.Tensor) -> torch.memory_format:
    """``channels_last_3d`` for a Conv3d weight stored NDHWC (``to_channels_last``), else
    ``contiguous_format``: the layout a convolution's input should have to match it."""
    ndhwc = weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()
    return torch.channels_last_3d if ndhwc else torch.contiguous_format


class CostFilter(nn.Module):
    """4 x (Conv3d-BN-LReLU) and a final Conv3d to one channel: (B,C,D,H,W) -> (B,D,H,W)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        for _ in range(4):
            layers += [nn.Conv3d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm3d(ch),
                       nn.LeakyReLU(_LEAK, inplace=True)]
        layers.append(nn.Conv3d(ch, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout its input should be built in: that of its first convolution's weights
        (``to_channels_last`` makes them NDHWC)."""
        return weight_layout_3d(self.net[0].weight)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.net(volume).squeeze(1)


def soft_argmin(cost: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable arg-min over dim 1 of a (B, D, H, W) cost.

    Returns the expected disparity ``sum_d softmax(-cost)_d * d * step`` as (B, 1, H, W)
    in pixels of the full input resolution, and the probabilities (B, D, H, W).
    The grid is ``arange(D) * step``: candidate d compares columns exactly d*step apart.
    """
    prob = F.softmax(-cost, dim=1)
    grid = torch.arange(cost.shape[1], device=cost.device, dtype=prob.dtype) * step
    disp = (prob * grid.view(1, -1, 1, 1)).sum(1, keepdim=True)
    return disp, prob


def distribution_confidence(prob: torch.Tensor, disp: torch.Tensor, step: int) -> torch.Tensor:
    """Probability mass within one candidate step of the expected disparity, in [0, 1].

    A peaked, unimodal matching distribution gives ~1; a flat or multi-modal one
    (texture-less or occluded regions) gives a small value. (B, 1, H, W).
    """
    grid = torch.arange(prob.shape[1], device=prob.device, dtype=prob.dtype).view(1, -1, 1, 1)
    near = ((grid - disp / step).abs() <= 1.0).to(prob.dtype)
    return (prob * near).sum(1, keepdim=True).clamp_(0.0, 1.0)


class Refiner(nn.Module):
    """Edge-aware residual refinement at one resolution (paper Sec. 3.3).

    Input: disparity (B,1,h,w) in full-resolution pixels and the image resized to (h,w).
    3x3 conv, residual blocks with dilations 1,2,4,8,1,1, 3x3 conv to a residual; ReLU of
    the sum keeps disparities non-negative.
    """

    def __init__(self, cin: int, ch: int) -> None:
        super().__init__()
        self.head = _conv_bn_lrelu(cin + 1, ch)  # cin: image channels (+ residual channels)
        self.blocks = nn.Sequential(*[ResBlock(ch, d) for d in (1, 2, 4, 8, 1, 1)])
        self.out = nn.Conv2d(ch, 1, 3, 1, 1)

    def forward(self, disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        # Disparities are full-resolution pixels at every level, so the residual is too;
        # the head's BatchNorm absorbs the input's scale.
        x = self.head(torch.cat([disp, image], 1))
        return F.relu(disp + self.out(self.blocks(x)))


def warp_horizontal(image: torch.Tensor, disp: torch.Tensor, *, direction: int) -> torch.Tensor:
    """``image`` (B, C, h, w) sampled at column ``x + direction * disp`` of each pixel (linear
    interpolation along the row; outside the image the border column is held).

    ``disp`` (B, 1, h, w) is in pixels of this resolution. direction -1 warps the right view
    onto the left (a left pixel at x sees the right view at x - d), +1 the left onto the right.
    A gather, not grid_sample: rows never mix, and positions stay fp32 under bf16 autocast
    (a bf16 column near x = 300 is off by up to 1 px)."""
    b, c, h, w = image.shape
    cols = torch.arange(w, device=image.device, dtype=torch.float32).view(1, 1, 1, w)
    pos = (cols + direction * disp.float()).clamp(0.0, w - 1.0)
    # i0 stops at w - 2 so that x = w - 1 is i0 + 1 with weight 1, not an index past the end
    i0 = pos.floor().long().clamp(0, max(w - 2, 0))
    frac = pos - i0.float()
    i1 = (i0 + 1).clamp(max=w - 1)
    src = image.float()
    v0 = torch.gather(src, 3, i0.expand(b, c, h, w))
    v1 = torch.gather(src, 3, i1.expand(b, c, h, w))
    return (v0 + frac * (v1 - v0)).to(image.dtype)


def widen_refiner_heads(state: Dict[str, torch.Tensor], *, refiner_inputs: int) -> Dict[str, torch.Tensor]:
    """A state_dict of a model with fewer residual channels (no ``warp_refinement``, or fewer
    ``warp_offsets``) made loadable into one whose refiners see ``refiner_inputs`` image
    channels (``StereoNetConfig.refiner_inputs``): each refiner head's convolution gets zero
    weights for the new channels, which come last, so the widened model computes exactly what
    the original did until training gives them weight."""
    out = dict(state)
    for name, w in state.items():
        if name.startswith("refiners.") and name.endswith("head.0.weight") and w.shape[1] < refiner_inputs + 1:
            extra = refiner_inputs + 1 - w.shape[1]
            out[name] = torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], 1)
    return out


def keep_refiners(model: StereoNet, n: int) -> StereoNet:
    """Keep only the first ``n`` refiners of ``model``, in place, and return it.

    An inference-time speed knob: the last refined level (1/2^(k-n) resolution) is upsampled
    bilinearly to full resolution by ``forward``. The kept refiners' trained weights are used
    as they are. Raises ValueError outside 0..(refiners the model has).
    """
    have = len(model.refiners)
    if not 0 <= n <= have:
        raise ValueError(f"this model has {have} refiners, so 0..{have} can be kept, got {n}")
    model.refiners = nn.ModuleList(list(model.refiners)[:n])
    model.config = replace(model.config, refinement_levels=n)
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution before it, in place; returns ``model``.

    Inference only (the running statistics become constants): ``y = s * (W x + b - mean) + beta``
    with ``s = gamma / sqrt(var + eps)`` is one convolution with weights ``s W`` and bias
    ``s (b - mean) + beta``, so each BatchNorm's separate pass over the activations - a full
    read and write of a 32-channel full-resolution tensor in every refiner block - disappears.
    The BatchNorm is replaced by ``nn.Identity``, which keeps module indices (and therefore
    ``state_dict`` keys of the convolutions) unchanged. Outputs agree to float rounding.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (it freezes the running statistics)")
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.Conv3d)) and isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm3d)) \
                    and bn.num_features == conv.out_channels and bn.track_running_stats:
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return model


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every Conv2d weight channels-last (NHWC) and every Conv3d weight NDHWC, in
    place; returns ``model``.

    With NHWC weights and an NHWC input the 2D convolutions stay NHWC end to end (oneDNN on
    the CPU, cuDNN's tensor-core kernels on CUDA) instead of converting layouts per layer.
    The cost volume is then built NDHWC (``CostFilter.memory_format``): oneDNN's 16-channel
    3x3x3 convolution measured 1.5x faster in that layout than NCDHW on an AVX2 CPU.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
        elif isinstance(m, nn.Conv3d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d)
    return model


class _OneDNNConv3d(nn.Conv3d):
    """Conv3d that always takes oneDNN on the CPU in fp32 inference.

    PyTorch's CPU dispatcher picks oneDNN only when ``N*C*D*H`` of the input exceeds 20480
    (a heuristic tuned for 2D); a short cost volume - 16 channels and 12 candidates, i.e.
    max_disparity 96 - falls back to the im2col ``slow_conv3d``, measured ~10x slower per
    candidate than oneDNN on the same shapes. Training, autocast and other devices take the
    normal path unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available()
                and not torch.compiler.is_compiling()  # traced graphs choose their own kernels
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))):
            x = x.contiguous(memory_format=weight_layout_3d(self.weight))
            return torch.mkldnn_convolution(x, self.weight, self.bias,
                                            self.padding, self.stride, self.dilation, self.groups)
        return super().forward(x)


def use_onednn_conv3d(model: nn.Module) -> nn.Module:
    """Make every plain Conv3d of ``model`` an ``_OneDNNConv3d`` (same parameters and
    state_dict), in place; returns ``model``. For CPU inference."""
    for m in model.modules():
        if type(m) is nn.Conv3d:
            m.__class__ = _OneDNNConv3d
    return model


class StereoNet(nn.Module):
    """StereoNet: features at 1/2^k, difference cost volume, 3D filtering, soft-argmin,
    hierarchical refinement. ``forward`` returns a dict:

    - ``disparities``: list, coarse to fine, of (B,1,h_i,w_i) left disparities in
      full-resolution pixels (first = soft-argmin at 1/2^k, then one per refiner);
    - ``disparity``: (B,1,H,W) final left disparity at full resolution (bilinear upsample
      of the last level when fewer than k refiners);
    - ``confidence``: (B,1,H,W) in [0, 1] (only when ``with_confidence``);
    - ``right_disparities``: same pyramid for the right view, and ``right_disparity`` its
      last level at full resolution (only when ``with_right``).

    ``cost_volume`` selects how the cost volume is built (a key of ``COST_VOLUMES``, same
    values either way): ``"unfold"`` (default, fastest in torch) or ``"slices"`` (what the
    ONNX export traces). A plain attribute, not a parameter: it is not in the state_dict.
    """

    cost_volume: str = "unfold"

    def __init__(self, config: Optional[StereoNetConfig] = None, **kwargs: object) -> None:
        super().__init__()
        self.config = config if config is not None else StereoNetConfig(**kwargs)  # type: ignore[arg-type]
        c = self.config
        self.features = FeatureExtractor(c.in_channels, c.features, c.k)
        self.cost_filter = CostFilter(c.features)
        self.refiners = nn.ModuleList([Refiner(c.refiner_inputs, c.features) for _ in range(c.num_refiners)])

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** self.config.k

    def level_grid(self, level: int) -> Tuple[int, float]:
        """(stride, offset) of pyramid level ``level`` (0 = the cost volume's soft-argmin, i =
        after refiner i): its pixel j is centred on input coordinate ``stride * j + offset``."""
        stride = 2 ** (self.config.k - level)
        if level == 0 and self.config.aligned_coarse:
            return stride, 0.0
        return stride, (stride - 1) / 2

    def upsample_level(self, x: torch.Tensor, level: int, size: Tuple[int, int],
                       dst_stride: float = 1.0) -> torch.Tensor:
        """A map of pyramid level ``level`` (disparities, costs, confidence) resampled to
        ``size`` on the grid of stride ``dst_stride`` (1 = input resolution), on its true grid."""
        stride, offset = self.level_grid(level)
        return resample(x, size, src_stride=stride, src_offset=offset, dst_stride=dst_stride)

    def _pyramid(self, coarse: torch.Tensor, image: torch.Tensor, other: torch.Tensor,
                 direction: int) -> List[torch.Tensor]:
        """Refine ``coarse`` (disparities of ``image``; ``other`` is the second view, found at
        ``x + direction * d``) level by level; returns [coarse, refined levels...]."""
        out = [coarse]
        disp = coarse
        k = self.config.k

        def at(x: torch.Tensor, scale: int, h: int, w: int) -> torch.Tensor:
            return x if scale == 1 else F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

        for i, refiner in enumerate(self.refiners):
            scale = 2 ** (k - i - 1)
            h, w = image.shape[-2] // scale, image.shape[-1] // scale
            disp = self.upsample_level(disp, i, (h, w), dst_stride=scale)
            img = at(image, scale, h, w)
            offsets = self.config.residual_offsets
            if offsets:
                seen, level_disp = at(other, scale, h, w), disp / scale
                img = torch.cat([img] + [img - warp_horizontal(seen, level_disp + o if o else level_disp,
                                                               direction=direction) for o in offsets], 1)
            disp = refiner(disp, img)
            out.append(disp)
        return out

    def _full(self, disp: torch.Tensor, level: int, size: Tuple[int, int]) -> torch.Tensor:
        if tuple(disp.shape[-2:]) == tuple(size):
            return disp
        return self.upsample_level(disp, level, size)

    def forward(self, left: torch.Tensor, right: torch.Tensor, with_right: bool = False,
                with_confidence: bool = False, candidates: Optional[int] = None,
                refine: bool = True, with_cost: bool = False) -> Dict[str, object]:
        """``candidates`` overrides the cost volume's disparity count D (the 3D filter is
        convolutional over disparity, so a trained model can search a shorter or longer
        range at inference). ``refine=False`` stops after the soft-argmin (the cheap
        matching-only training stage). ``with_cost`` adds ``cost`` (B, D, h, w), the filtered
        matching cost at 1/2^k whose ``softmax(-cost)`` is the disparity distribution (and
        ``right_cost`` with ``with_right``), for a loss on the distribution itself."""
        if left.shape != right.shape:
            raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
        h, w = left.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"input {h}x{w} is not a multiple of {self.divisor}; pad it first")
        step = self.divisor
        d = self.config.candidates if candidates is None else int(candidates)
        if d < 2:
            raise ValueError(f"need at least 2 disparity candidates, got {d}")
        # One batched pass of the shared extractor over both views.
        feats = self.features(torch.cat([left, right], 0))
        fl, fr = feats.chunk(2, 0)
        try:
            volume = COST_VOLUMES[self.cost_volume]
        except KeyError:
            raise ValueError(f"cost_volume must be one of {sorted(COST_VOLUMES)}, "
                             f"got {self.cost_volume!r}") from None
        layout = self.cost_filter.memory_format
        cost = self.cost_filter(volume(fl, fr, d, direction=-1, memory_format=layout))
        coarse, prob = soft_argmin(cost, step)
        pyr = self._pyramid(coarse, left, right, -1) if refine else [coarse]
        result: Dict[str, object] = {"disparities": pyr, "disparity": self._full(pyr[-1], len(pyr) - 1, (h, w))}
        if with_cost:
            result["cost"] = cost
        if with_confidence:
            conf = distribution_confidence(prob, coarse, step)
            result["confidence"] = self._full(conf, 0, (h, w))
        if with_right:
            cost_r = self.cost_filter(volume(fr, fl, d, direction=+1, memory_format=layout))
            coarse_r, _ = soft_argmin(cost_r, step)
            pyr_r = self._pyramid(coarse_r, right, left, +1) if refine else [coarse_r]
            result["right_disparities"] = pyr_r
            result["right_disparity"] = self._full(pyr_r[-1], len(pyr_r) - 1, (h, w))
            if with_cost:
                result["right_cost"] = cost_r
        return result
