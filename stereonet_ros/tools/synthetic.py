"""Procedural synthetic stereo pairs with exact disparity (no download).

A scene is a stack of planar, textured layers (rectangles, ellipses, star-shaped polygons,
thin bars) over a textured background plane. Every layer is a plane in disparity space,
``d(x, y) = a + b * x + c * y`` in *left-image pixel coordinates* (fronto-parallel when
``b = c = 0``; slanted otherwise). Both eyes are rendered analytically:

- A layer's shape and texture live in the *cyclopean* coordinate ``u = x_l - d / 2 =
  x_r + d / 2`` (so both eyes sample the texture at the same sub-pixel phase and are
  equally sharp).
- Left pixel ``x_l`` sees the layer point with ``d = a + b x_l + c y``; right pixel ``x_r``
  sees the point with ``x_l = (x_r + a + c y) / (1 - b)`` (the plane solved for x_l).
- Occlusion is a z-buffer on disparity: the largest disparity (nearest surface) wins, in
  both eyes. Hence the ground truth is exact at every pixel centre, including slanted
  planes and occlusion boundaries.

Conventions (as ``stereonet_ros.model``): disparities are float32 pixels, positive,
``x_r = x_l - disp`` for the left map and ``x_l = x_r + disp_right`` for the right map.
Images are float32 RGB in [0, 1], (H, W, 3).

Textures are photographs bundled with scikit-image (read from its data folder, never
fetched) plus procedural noise. The ``motorcycle_*`` pair is *excluded on purpose*: it is
the held-out real-photograph test of the shipped model (``training/measure.py``).

Everything is a pure function of the seed: ``render_scene(seed, ...)`` always returns the
same pair.
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .. import geometry

# scikit-image bundled photographs used as textures. Deliberately NOT the motorcycle pair
# (held-out test) nor binary/synthetic drawings (horse, phantom, logo, chessboards).
TEXTURE_FILES: Tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
    "ihc.png", "microaneurysms.png", "moon.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
)
_FORBIDDEN = "motorcycle"


@dataclass
class SyntheticConfig:
    """Scene statistics. Disparities in pixels of the rendered image."""

    height: int = 256
    width: int = 512
    max_disparity: float = 128.0      # exclusive upper bound of sampled disparities
    min_disparity: float = 0.0
    min_layers: int = 3
    max_layers: int = 12
    slant_prob: float = 0.35          # probability that a layer / the background is slanted
    max_slope: float = 0.12           # |dd/dx|, |dd/dy| of slanted planes (pixels per pixel)
    photo_prob: float = 0.7           # texture is a photograph (else procedural)
    flat_prob: float = 0.05           # texture is almost uniform (texture-less surfaces)
    near_bias: float = 2.0            # >1 skews object disparities toward the background
    background_max: float = 0.35      # background disparity <= this fraction of the range
    noise_max: float = 0.02           # max std of per-eye Gaussian pixel noise ([0,1] units)
    photometric: float = 1.0          # scale of per-eye gain/bias/gamma differences (0 = none)
    blur_max: float = 0.8             # max optics blur sigma (same for both eyes), pixels
    integer_disparity: bool = False   # round plane offsets and disable slant (exact-warp tests)
    detail: float = 0.0               # amplitude of pixel-scale texture detail on every surface
    vignette: float = 0.0             # max per-eye radial fall-off at the corners (0.3 = -30 %)

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def texture_bank() -> Tuple[np.ndarray, ...]:
    """Float32 RGB [0, 1] photographs bundled with scikit-image (cached per process)."""
    import skimage.data

    folder = os.path.dirname(skimage.data.__file__)
    images: List[np.ndarray] = []
    for name in TEXTURE_FILES:
        assert _FORBIDDEN not in name  # the held-out test pair must never become a texture
        img = cv2.imread(os.path.join(folder, name), cv2.IMREAD_UNCHANGED)
        if img is None:
            continue
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
        scale = 255.0 if img.dtype == np.uint8 else 65535.0
        images.append(img.astype(np.float32) / scale)
    if not images:
        raise RuntimeError(f"no scikit-image texture found in {folder} (expected {TEXTURE_FILES})")
    return tuple(images)


# ----------------------------------------------------------------------------- textures

def _value_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multi-octave value noise, (h, w) in [0, 1]; a random power-law spectrum."""
    out = np.zeros((h, w), np.float32)
    beta = rng.uniform(0.3, 1.0)
    amp_total = 0.0
    size = int(rng.integers(2, 6))
    while size < max(h, w) * 2:
        grid = rng.random((max(2, size * h // max(h, w) + 1), max(2, size * w // max(h, w) + 1)),
                          dtype=np.float32)
        amp = (1.0 / size) ** beta
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp_total += amp
        size *= 2
    out /= amp_total
    lo, hi = np.percentile(out, (1, 99))
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _procedural_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.random()
    if kind < 0.7:
        chans = [_value_noise(rng, h, w) for _ in range(3)] if rng.random() < 0.5 else \
            [_value_noise(rng, h, w)] * 3
        tex = np.stack(chans, -1)
        tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        tex = tex * tint + rng.uniform(0, 1 - tint.max() + 1e-3)
    else:  # stripes / grid patterns with random frequency, phase and orientation
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, np.pi)
        freq = rng.uniform(0.05, 0.6)
        t = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * freq + rng.uniform(0, 6.3))
        if rng.random() < 0.5:
            ang2 = ang + rng.uniform(0.5, 2.6)
            t = t * np.sin((xx * np.cos(ang2) + yy * np.sin(ang2)) * rng.uniform(0.05, 0.6))
        t = 0.5 + 0.5 * t
        c0, c1 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
        tex = c0 + (c1 - c0) * t[..., None]
        tex += 0.15 * (_value_noise(rng, h, w)[..., None] - 0.5)
    return np.clip(tex, 0, 1).astype(np.float32)


def _photo_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bank = texture_bank()
    src = bank[int(rng.integers(len(bank)))]
    sh, sw = src.shape[:2]
    scale = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))
    ang = rng.uniform(-np.pi, np.pi) if rng.random() < 0.5 else rng.uniform(-0.3, 0.3)
    ca, sa = np.cos(ang) * scale, np.sin(ang) * scale
    # Maps texture pixel (x, y) -> source pixel; centred on a random source point.
    cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    m = np.array([[ca * flip, -sa, cx - (ca * flip * w / 2 - sa * h / 2)],
                  [sa * flip, ca, cy - (sa * flip * w / 2 + ca * h / 2)]], np.float32)
    tex = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT101)
    # Colour jitter: channel gains, partial desaturation, contrast.
    grey = tex.mean(-1, keepdims=True)
    tex = grey + (tex - grey) * rng.uniform(0.3, 1.3)
    tex = tex * rng.uniform(0.7, 1.2, 3).astype(np.float32)
    tex = (tex - 0.5) * rng.uniform(0.6, 1.3) + 0.5 + rng.uniform(-0.15, 0.15)
    return np.clip(tex, 0, 1).astype(np.float32)


def _texture(rng: np.random.Generator, h: int, w: int, cfg: SyntheticConfig,
             detail_rng: Optional[np.random.Generator] = None) -> np.ndarray:
    tex = _base_texture(rng, h, w, cfg)
    if cfg.detail > 0:
        # A generator of its own, so switching detail on leaves the scene's geometry as is.
        rng = detail_rng if detail_rng is not None else np.random.default_rng(0)
        # Real surfaces carry fine grain (paper, fabric, asphalt) that photographs resized as
        # textures lose; it is what sub-pixel matching locks on to.
        grain = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), rng.uniform(0.5, 1.2))
        grain = (grain - grain.mean()) / max(float(grain.std()), 1e-6)
        tex = np.clip(tex + cfg.detail * rng.uniform(0.2, 1.0) * grain[..., None], 0, 1).astype(np.float32)
    return tex


def _base_texture(rng: np.random.Generator, h: int, w: int, cfg: SyntheticConfig) -> np.ndarray:
    r = rng.random()
    if r < cfg.flat_prob:  # nearly texture-less: smooth shading + faint noise
        base = rng.random(3, dtype=np.float32)
        shade = 0.85 + 0.3 * _value_noise(rng, max(4, h // 8), max(4, w // 8))
        shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(base * shade[..., None], 0, 1).astype(np.float32)
    if r < cfg.flat_prob + cfg.photo_prob:
        return _photo_texture(rng, h, w)
    return _procedural_texture(rng, h, w)


# ----------------------------------------------------------------------------- geometry

@dataclass
class _Layer:
    a: float          # disparity plane d = a + b x_l + c y (left-image pixels)
    b: float
    c: float
    shape: str        # background | rect | ellipse | polygon
    params: Tuple     # shape parameters in cyclopean (u, y) coordinates
    texture: np.ndarray
    tex_off: float    # texture column of u = 0


def _fit_plane(rng: np.random.Generator, d0: float, x0: float, y0: float, slanted: bool,
               cfg: SyntheticConfig, lo: float, hi: float) -> Tuple[float, float, float]:
    """Plane through (x0, y0, d0), slopes shrunk so d stays in [lo, hi] over the image."""
    if not slanted:
        return d0, 0.0, 0.0
    b = rng.uniform(-cfg.max_slope, cfg.max_slope)
    c = rng.uniform(-cfg.max_slope, cfg.max_slope) * (1.5 if rng.random() < 0.3 else 1.0)
    corners = [(0.0, 0.0), (cfg.width - 1.0, 0.0), (0.0, cfg.height - 1.0),
               (cfg.width - 1.0, cfg.height - 1.0)]
    devs = [b * (x - x0) + c * (y - y0) for x, y in corners]
    s = 1.0
    for dv in devs:  # largest s in [0, 1] with lo <= d0 + s*dv <= hi at every corner
        if dv > 0 and d0 + dv > hi:
            s = min(s, (hi - d0) / dv)
        elif dv < 0 and d0 + dv < lo:
            s = min(s, (lo - d0) / dv)
    s = max(s, 0.0)
    b, c = b * s, c * s
    return d0 - b * x0 - c * y0, b, c


def _shape_mask(layer: _Layer, u: np.ndarray, y: np.ndarray) -> np.ndarray:
    if layer.shape == "background":
        return np.ones(u.shape, bool)
    if layer.shape in ("rect", "ellipse"):
        cu, cy, ru, ry, ang = layer.params
        ca, sa = np.cos(ang), np.sin(ang)
        du, dy = u - cu, y - cy
        p = (du * ca + dy * sa) / ru
        q = (-du * sa + dy * ca) / ry
        if layer.shape == "rect":
            return (np.abs(p) <= 1.0) & (np.abs(q) <= 1.0)
        return p * p + q * q <= 1.0
    # Star-shaped polygon: vertex angles th (sorted) and radii r around (cu, cy); a point
    # is inside iff its radius is below the polygon edge crossing its direction.
    cu, cy, th, r = layer.params
    du, dy = u - cu, y - cy
    phi = np.mod(np.arctan2(dy, du), 2 * np.pi)
    n = len(th)
    th_ext = np.concatenate([th, th[:1] + 2 * np.pi])
    r_ext = np.concatenate([r, r[:1]])
    idx = np.clip(np.searchsorted(th_ext, phi, side="right") - 1, -1, n - 1)
    wrap = idx < 0  # phi before the first vertex: edge from the last vertex
    phi_adj = np.where(wrap, phi + 2 * np.pi, phi)
    idx = np.where(wrap, n - 1, idx)
    t0, t1 = th_ext[idx], th_ext[idx + 1]
    p0 = np.stack([r_ext[idx] * np.cos(t0), r_ext[idx] * np.sin(t0)], -1)
    p1 = np.stack([r_ext[idx + 1] * np.cos(t1), r_ext[idx + 1] * np.sin(t1)], -1)
    # Ray from the centre along phi hits segment p0-p1 at radius rho (2-D cross products).
    dirx, diry = np.cos(phi_adj), np.sin(phi_adj)
    ex, ey = p1[..., 0] - p0[..., 0], p1[..., 1] - p0[..., 1]
    denom = dirx * ey - diry * ex
    rho = (p0[..., 0] * ey - p0[..., 1] * ex) / np.where(np.abs(denom) < 1e-9, 1e-9, denom)
    return np.hypot(du, dy) <= rho


def _sample_layers(rng: np.random.Generator, cfg: SyntheticConfig,
                   detail_rng: Optional[np.random.Generator] = None) -> List[_Layer]:
    h, w = cfg.height, cfg.width
    lo, hi = cfg.min_disparity, cfg.max_disparity * 0.999
    span = hi - lo
    tw = int(w + 2 * np.ceil(cfg.max_disparity)) + 2   # u in [-maxd/2, w + maxd/2]
    tex_off = float(np.ceil(cfg.max_disparity)) + 1.0
    layers: List[_Layer] = []
    # Background: far, fronto-parallel or slanted (e.g. a floor: disparity grows with y).
    # Real scenes: mostly small/moderate disparities, some near objects up to the max.
    d_bg = lo + span * rng.uniform(0.0, cfg.background_max) ** 1.5
    slanted = (not cfg.integer_disparity) and rng.random() < cfg.slant_prob
    a, b, c = _fit_plane(rng, d_bg, w / 2, h / 2, slanted, cfg, lo, hi)
    if cfg.integer_disparity:
        a = float(np.round(a))
    layers.append(_Layer(a, b, c, "background", (), _texture(rng, h, tw, cfg, detail_rng), tex_off))
    n = int(rng.integers(cfg.min_layers, cfg.max_layers + 1))
    for _ in range(n):
        # Object disparity between background and max, skewed toward the background.
        d0 = d_bg + (hi - d_bg) * rng.random() ** cfg.near_bias
        cu = rng.uniform(-0.1, 1.1) * w
        cy = rng.uniform(-0.1, 1.1) * h
        size = float(np.exp(rng.uniform(np.log(0.03), np.log(0.35)))) * max(h, w)
        kind = rng.random()
        ang = rng.uniform(0, np.pi)
        if kind < 0.3:
            shape, params = "rect", (cu, cy, size, size * rng.uniform(0.2, 1.5), ang)
        elif kind < 0.55:
            shape, params = "ellipse", (cu, cy, size, size * rng.uniform(0.3, 1.2), ang)
        elif kind < 0.85:
            nv = int(rng.integers(3, 9))
            th = np.sort(rng.uniform(0, 2 * np.pi, nv))
            rr = size * rng.uniform(0.4, 1.0, nv)
            shape, params = "polygon", (cu, cy, th, rr)
        else:  # thin bar (poles, cables, table legs): hard for matching, common in robotics
            shape, params = "rect", (cu, cy, size * 1.5, rng.uniform(1.0, 6.0),
                                     ang if rng.random() < 0.5 else np.pi / 2 + rng.uniform(-0.2, 0.2))
        slanted = (not cfg.integer_disparity) and rng.random() < cfg.slant_prob
        a, b, c = _fit_plane(rng, d0, cu, cy, slanted, cfg, lo, hi)
        if cfg.integer_disparity:
            a = float(np.round(a))
        layers.append(_Layer(a, b, c, shape, params, _texture(rng, h, tw, cfg, detail_rng), tex_off))
    return layers


def _render_view(layers: List[_Layer], h: int, w: int, right: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Z-buffer rendering of one eye: (image (h,w,3), disparity (h,w)) at pixel centres."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    best = np.full((h, w), -np.inf)
    image = np.zeros((h, w, 3), np.float32)
    for L in layers:
        # Left pixel: x_l = x. Right pixel x_r = x_l - d(x_l) -> x_l = (x_r + a + c y) / (1 - b).
        xl = (x + L.a + L.c * y) / (1.0 - L.b) if right else x
        d = L.a + L.b * xl + L.c * y
        u = xl - 0.5 * d
        mask = _shape_mask(L, u, y) & (d > best)
        if not mask.any():
            continue
        best = np.where(mask, d, best)
        tex = cv2.remap(L.texture, (u + L.tex_off).astype(np.float32), y.astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        image[mask] = tex[mask]
    return image, best.astype(np.float32)


def _camera(rng: np.random.Generator, img: np.ndarray, cfg: SyntheticConfig,
            blur: float) -> np.ndarray:
    """Per-eye photometric response (gain, bias, gamma, channel balance) and sensor noise."""
    p = cfg.photometric
    out = img
    if blur > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    if cfg.vignette > 0:
        # Each lens darkens its own corners, so the two views differ more at the image edges.
        h, w = out.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        out = out * (1.0 - rng.uniform(0, cfg.vignette) * r2)[..., None]
    if p > 0:
        gain = 1.0 + p * rng.uniform(-0.08, 0.08) + p * rng.uniform(-0.03, 0.03, 3)
        bias = p * rng.uniform(-0.03, 0.03)
        gamma = 1.0 + p * rng.uniform(-0.1, 0.1)
        out = np.clip(out * gain.astype(np.float32) + bias, 0, 1) ** gamma
    if cfg.noise_max > 0:
        sigma = rng.uniform(0, cfg.noise_max)
        out = out + rng.normal(0, sigma, out.shape).astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float [0, 1] image as a camera's 8-bit bytes (rounded to nearest, clipped)."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_scene(seed: int, config: Optional[SyntheticConfig] = None) -> Dict[str, np.ndarray]:
    """Render one stereo pair; a pure function of ``seed`` and ``config``.

    Returns float32 arrays: ``left``, ``right`` (H, W, 3) in [0, 1]; ``disp`` and
    ``disp_right`` (H, W) in pixels (x_r = x_l - disp; x_l = x_r + disp_right), exact at
    pixel centres and finite everywhere.
    """
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x57E4E0]))
    layers = _sample_layers(rng, cfg, np.random.default_rng(np.random.SeedSequence([int(seed), 0xDE7A11])))
    left, disp = _render_view(layers, cfg.height, cfg.width, right=False)
    right, disp_r = _render_view(layers, cfg.height, cfg.width, right=True)
    blur = rng.uniform(0, cfg.blur_max) if cfg.blur_max > 0 else 0.0
    left = _camera(rng, left, cfg, blur)
    right = _camera(rng, right, cfg, blur)
    return {"left": left, "right": right, "disp": disp, "disp_right": disp_r}


def warp_right_to_left(right: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Sample the right image at x_l - disp (bilinear): the left view where not occluded."""
    h, w = disp.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(right.astype(np.float32), x - disp.astype(np.float32), y,
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)


def left_right_consistent(disp: np.ndarray, disp_right: np.ndarray, tol: float = 0.5) -> np.ndarray:
    """Mask of left pixels visible in the right view: disp_right(x_l - disp) == disp within
    ``tol`` px (the node's left-right check, ``geometry.left_right_consistent``, on exact gt)."""
    return geometry.left_right_consistent(disp, disp_right, tol)


def fronto_parallel_pair(disparity: float, size: Tuple[int, int] = (240, 320),
                         seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """A textured plane facing the camera at one disparity (px), filling both views.

    Returns float32 RGB [0, 1] (H, W, 3) ``left`` and ``right`` with ``right(x) =
    left(x + disparity)`` sampled from the same texture (bilinear, so sub-pixel disparities
    are exact up to interpolation); left columns below ``disparity`` have no match. The
    texture is value noise (mid and high frequencies), no photograph, so the check is
    independent of the training textures.
    """
    h, w = size
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF1A7]))
    tw = int(w + np.ceil(disparity) + 4)
    tex = np.stack([_value_noise(rng, h, tw) for _ in range(3)], -1).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    left = np.ascontiguousarray(tex[:, :w])
    right = cv2.remap(tex, xs + np.float32(disparity), ys, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT101)
    return left, right.astype(np.float32)
