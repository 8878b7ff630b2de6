"""Per-batch augmentation on tensors, on whatever device the batch lives (GPU or CPU).

Every geometric op (random resized crop / zoom, flip, rotation, shear, and the geometric
TrivialAugment/RandAugment ops) is folded into one affine matrix per image and applied with a
single `grid_sample`; pixel ops work on the whole batch with per-image factors. Nothing loops
over images and nothing syncs with the host. Randomness comes from an explicit CPU
`torch.Generator` (small per-image parameters) plus a device generator seeded from it (pixel
noise), so a seed reproduces a batch exactly on a given device. The per-image parameters go to
a GPU from pinned memory (asynchronous copies); constant tensors (grey weights, sharpen kernel,
YIQ matrices) are built once per device and dtype, not per batch.

Op order: geometry -> color jitter -> auto-augment pixel ops -> noise -> random erasing.
Mixup / cutmix need the labels and live in `vistune.train.mix`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from vistune.config import AugmentCfg

_OPS = (
    "random_resized_crop",
    "hflip",
    "rotation",
    "shear",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "gaussian_noise",
    "salt_pepper",
    "auto_augment",
    "random_erasing",
)

# auto-augment op table: name -> maximum magnitude (TrivialAugment-wide style ranges)
_AA_GEOM = {"rotate": 30.0, "shear_x": 0.3, "shear_y": 0.3, "translate_x": 0.45, "translate_y": 0.45}
_AA_PIXEL = {
    "identity": 0.0,
    "brightness": 0.9,
    "saturation": 0.9,
    "contrast": 0.9,
    "sharpness": 0.9,
    "posterize": 4.0,
    "solarize": 1.0,
    "autocontrast": 0.0,
}
_AA_NAMES = list(_AA_GEOM) + list(_AA_PIXEL)
_AA_SIGNED = {
    "rotate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "brightness",
    "saturation",
    "contrast",
    "sharpness",
}
_AA_MAXES = torch.tensor([(_AA_GEOM | _AA_PIXEL)[k] for k in _AA_NAMES])
_AA_SIGNED_MASK = torch.tensor([k in _AA_SIGNED for k in _AA_NAMES])

# RGB <-> YIQ: hue is a rotation of the (I, Q) chroma plane
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)
_GRAY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
_SHARPEN = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13
_CONSTANTS = {"yiq": _YIQ, "yiq_inv": _YIQ_INV, "gray": _GRAY, "sharpen": _SHARPEN}


@lru_cache(maxsize=64)
def _constant_on(name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _CONSTANTS[name].to(device=device, dtype=dtype)


def _const(name: str, x: torch.Tensor) -> torch.Tensor:
    """A module-level constant on `x`'s device and dtype, copied there once."""
    return _constant_on(name, x.device, x.dtype)


def _to(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Small per-batch parameters (made on the CPU) onto `x`'s device: pinned + async on CUDA."""
    if x.device.type == "cuda":
        v = v.pin_memory()
    return v.to(device=x.device, dtype=x.dtype if v.is_floating_point() else v.dtype, non_blocking=True)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample by the affine `theta`; a batch of pure mirrors/identities (hflip alone) is flipped
    exactly instead, since bilinear grid_sample reproduces a flip only up to float rounding."""
    mirror_only = bool(
        (theta[:, :, 2] == 0).all()
        and (theta[:, 0, 1] == 0).all()
        and (theta[:, 1, 0] == 0).all()
        and (theta[:, 1, 1] == 1).all()
        and (theta[:, 0, 0].abs() == 1).all()
    )
    if mirror_only:
        return torch.where(_view(_to(theta[:, 0, 0] < 0, x), x), x.flip(3), x)
    grid = F.affine_grid(_to(theta, x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def list_augments() -> list[str]:
    """Names of the batch ops, each switched on by its own key in the `augment:` params."""
    return list(_OPS)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.empty(n).uniform_(lo, hi, generator=g)


def _sym(n: int, amount: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=g) * 2 - 1) * amount


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * _const("gray", x)).sum(1, keepdim=True)


def _blend(img: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor 1 = img, 0 = degenerate, >1 extrapolates (PIL ImageEnhance semantics)."""
    return (degenerate + factor * (img - degenerate)).clamp(0, 1)


def _view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return _to(v, x).view(-1, 1, 1, 1)


def _sharpen_base(x: torch.Tensor) -> torch.Tensor:
    k = _const("sharpen", x)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(x.shape[1], 1, 3, 3), groups=x.shape[1])
    return blurred


def _pixel_op(name: str, x: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """One auto-augment pixel op on the whole batch; `mag` is per image (N,) signed magnitude."""
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), _view(1 + mag, x))
    if name == "saturation":
        return _blend(x, _gray(x), _view(1 + mag, x))
    if name == "contrast":
        return _blend(x, _gray(x).mean((2, 3), keepdim=True), _view(1 + mag, x))
    if name == "sharpness":
        return _blend(x, _sharpen_base(x), _view(1 + mag, x))
    if name == "posterize":
        step = _view(2.0 ** mag.round(), x) / 255  # drop `mag` low bits of 8
        return torch.floor(x / step) * step
    if name == "solarize":
        thr = _view(1 - mag, x)
        return torch.where(x >= thr, 1 - x, x)
    if name == "autocontrast":
        lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        scale = torch.where(hi > lo, 1 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
        return torch.where(hi > lo, (x - lo) * scale, x).clamp(0, 1)
    return x


@dataclass(frozen=True)
class BatchAugment:
    cfg: AugmentCfg

    def enabled(self) -> list[str]:
        """The ops this config switches on (in application order)."""
        c = self.cfg
        on = {
            "random_resized_crop": tuple(c.scale) != (1.0, 1.0) or tuple(c.ratio) != (1.0, 1.0),
            "hflip": c.hflip > 0,
            "rotation": c.rotation > 0,
            "shear": c.shear > 0,
            "brightness": c.brightness > 0,
            "contrast": c.contrast > 0,
            "saturation": c.saturation > 0,
            "hue": c.hue > 0,
            "gaussian_noise": c.gaussian_noise > 0,
            "salt_pepper": c.salt_pepper > 0,
            "auto_augment": c.auto_augment != "none",
            "random_erasing": c.reprob > 0,
        }
        return [op for op in _OPS if on[op]]

    # ---- random parameters (CPU, tiny) ---------------------------------------------------

    def _auto_augment_draws(self, n: int, g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per draw: (op index per image, signed magnitude per image, in the op's own units)."""
        c = self.cfg
        if c.auto_augment == "none":
            return []
        maxes, signed = _AA_MAXES, _AA_SIGNED_MASK
        draws = []
        for _ in range(1 if c.auto_augment == "trivial" else max(1, c.aa_num_ops)):
            op = torch.randint(len(_AA_NAMES), (n,), generator=g)
            level = torch.rand(n, generator=g) if c.auto_augment == "trivial" else torch.full((n,), c.aa_magnitude)
            sign = torch.where((torch.rand(n, generator=g) < 0.5) & signed[op], -1.0, 1.0)
            draws.append((op, level * maxes[op] * sign))
        return draws

    def _affine(self, n: int, g: torch.Generator, aa: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor | None:
        """N x 2 x 3 matrices mapping output coords to input coords (normalized [-1, 1]), or None
        when no geometric op is on (the batch is then not resampled at all)."""
        c = self.cfg
        on = set(self.enabled())
        aa_geom = [(op, m) for op, m in aa]
        if not ({"random_resized_crop", "hflip", "rotation", "shear"} & on) and not aa_geom:
            return None
        sw = sh = torch.ones(n)
        tx = ty = torch.zeros(n)
        if "random_resized_crop" in on:
            area = _uniform(n, c.scale[0], c.scale[1], g)
            ratio = torch.exp(_uniform(n, math.log(c.ratio[0]), math.log(c.ratio[1]), g))
            sw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width as a fraction of the image
            sh = torch.sqrt(area / ratio).clamp(max=1.0)
            tx = _sym(n, 1.0, g) * (1 - sw)  # crop centre stays inside the image
            ty = _sym(n, 1.0, g) * (1 - sh)
        angle = _sym(n, math.radians(c.rotation), g)
        shx = torch.tan(_sym(n, math.radians(c.shear), g))
        shy = torch.tan(_sym(n, math.radians(c.shear), g))
        flip = torch.where(torch.rand(n, generator=g) < c.hflip, -1.0, 1.0)
        for op, m in aa_geom:
            pick = lambda name: torch.where(op == _AA_NAMES.index(name), m, torch.zeros(n))  # noqa: E731
            angle = angle + torch.deg2rad(pick("rotate"))
            shx, shy = shx + pick("shear_x"), shy + pick("shear_y")
            tx, ty = tx + 2 * pick("translate_x"), ty + 2 * pick("translate_y")
        cos, sin, one, zero = torch.cos(angle), torch.sin(angle), torch.ones(n), torch.zeros(n)

        def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
            return torch.stack([torch.stack(r, dim=1) for r in rows], dim=1)

        crop = mat([[sw, zero, tx], [zero, sh, ty], [zero, zero, one]])
        rot = mat([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])
        shear = mat([[one, shx, zero], [shy, one, zero], [zero, zero, one]])
        mirror = mat([[flip, zero, zero], [zero, one, zero], [zero, zero, one]])
        return (crop @ rot @ shear @ mirror)[:, :2]

    # ---- the batch transform -------------------------------------------------------------

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """x: float NCHW in [0, 1] -> augmented float NCHW in [0, 1], same shape, dtype, device."""
        c, n = self.cfg, x.shape[0]
        on = set(self.enabled())
        if n == 0 or not on:
            return x
        dg = torch.Generator(device=x.device).manual_seed(int(torch.randint(2**62, (1,), generator=g)))
        aa = self._auto_augment_draws(n, g)
        geom = [(op, m) for op, m in aa]
        theta = self._affine(n, g, geom)
        if theta is not None:
            x = _warp(x, theta)
        x = self._color_jitter(x, n, g, on)
        for op, m in aa:
            for i, name in enumerate(_AA_NAMES):
                if name in _AA_PIXEL and name != "identity" and bool((op == i).any()):
                    mask = _view((op == i).float(), x) > 0
                    x = torch.where(mask, _pixel_op(name, x, m), x)
        if "gaussian_noise" in on:
            x = x + torch.randn(x.shape, generator=dg, device=x.device, dtype=x.dtype) * c.gaussian_noise
        if "salt_pepper" in on:
            u = torch.rand((n, 1, *x.shape[2:]), generator=dg, device=x.device, dtype=x.dtype)
            p = c.salt_pepper
            x = torch.where(u < p / 2, torch.zeros_like(x), x)
            x = torch.where(u > 1 - p / 2, torch.ones_like(x), x)
        if "random_erasing" in on:
            x = self._erase(x, n, g, dg)
        return x.clamp(0, 1)

    def _color_jitter(self, x: torch.Tensor, n: int, g: torch.Generator, on: set[str]) -> torch.Tensor:
        c = self.cfg
        if "brightness" in on:
            x = _blend(x, torch.zeros_like(x), _view(_uniform(n, 1 - c.brightness, 1 + c.brightness, g), x))
        if "contrast" in on:
            f = _view(_uniform(n, max(0.0, 1 - c.contrast), 1 + c.contrast, g), x)
            x = _blend(x, _gray(x).mean((2, 3), keepdim=True), f)
        if "saturation" in on:
            x = _blend(x, _gray(x), _view(_uniform(n, max(0.0, 1 - c.saturation), 1 + c.saturation, g), x))
        if "hue" in on:
            a = _sym(n, 2 * math.pi * min(c.hue, 0.5), g)
            cos, sin, one, zero = torch.cos(a), torch.sin(a), torch.ones(n), torch.zeros(n)
            rot = torch.stack(
                [
                    torch.stack([one, zero, zero], 1),
                    torch.stack([zero, cos, -sin], 1),
                    torch.stack([zero, sin, cos], 1),
                ],
                1,
            )
            m = _to(_YIQ_INV @ rot @ _YIQ, x)
            x = torch.einsum("nij,njhw->nihw", m, x).clamp(0, 1)
        return x

    def _erase(self, x: torch.Tensor, n: int, g: torch.Generator, dg: torch.Generator) -> torch.Tensor:
        """timm-style random erasing: one rectangle per chosen image (2%..1/3 of the area, aspect
        0.3..3.3) filled with per-pixel uniform noise."""
        h, w = x.shape[2:]
        area = _uniform(n, 0.02, 1 / 3, g) * h * w
        aspect = torch.exp(_uniform(n, math.log(0.3), math.log(1 / 0.3), g))
        eh = torch.sqrt(area * aspect).round().clamp(1, h)
        ew = torch.sqrt(area / aspect).round().clamp(1, w)
        top = (torch.rand(n, generator=g) * (h - eh + 1)).floor()
        left = (torch.rand(n, generator=g) * (w - ew + 1)).floor()
        chosen = (torch.rand(n, generator=g) < self.cfg.reprob).float()
        box = _to(torch.stack([top, top + eh, left, left + ew, chosen], 1), x)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        b = box.view(n, 5, 1, 1)
        mask = (rows >= b[:, 0]) & (rows < b[:, 1]) & (cols >= b[:, 2]) & (cols < b[:, 3]) & (b[:, 4] > 0)
        noise = torch.rand(x.shape, generator=dg, device=x.device, dtype=x.dtype)
        return torch.where(mask.unsqueeze(1), noise, x)
