"""Every batch op against an independent reference on real photographs.

References: `torch.flip`, torchvision v2 functional ops (rotate, adjust_brightness / contrast /
saturation), scipy's bilinear `map_coordinates` for crops and shears, the NTSC YIQ formula for hue,
and sampling statistics (binomial / normal / uniform) for noise, salt-and-pepper and erasing.

How the random draws are read back: the draws depend on the generator's seed and the batch
shape only, never on the pixels, so the same seed on a *probe* batch (a coordinate ramp, a flat
grey, one known colour) shows each image's parameter, which the real batch is then checked with.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from scipy import ndimage, stats
from torchvision.transforms import InterpolationMode

from vistune.config import AugmentCfg
from vistune.errors import ConfigError
from vistune.train.augment import BatchAugment, list_augments

OFF = AugmentCfg(image_size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, rotation=0.0, salt_pepper=0.0)
STRONG = {
    "random_resized_crop": {"scale": (0.3, 0.6), "ratio": (0.75, 4 / 3)},
    "hflip": {"hflip": 1.0},
    "rotation": {"rotation": 30.0},
    "shear": {"shear": 20.0},
    "brightness": {"brightness": 0.5},
    "contrast": {"contrast": 0.5},
    "saturation": {"saturation": 0.5},
    "hue": {"hue": 0.3},
    "gaussian_noise": {"gaussian_noise": 0.05},
    "salt_pepper": {"salt_pepper": 0.2},
    "auto_augment": {"auto_augment": "rand", "aa_num_ops": 3, "aa_magnitude": 0.9},
    "random_erasing": {"reprob": 1.0},
}
SIZE = 48  # real images
N_DRAWS = 256  # images per distribution check (16 px probes)
# NTSC RGB -> YIQ (FCC 1953); hue jitter rotates the (I, Q) plane and keeps luma Y
YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def aug(op: str, x: torch.Tensor, seed: int, **extra) -> torch.Tensor:
    cfg = dataclasses.replace(OFF, **{**STRONG[op], **extra})
    return BatchAugment(cfg)(x.clone(), torch.Generator().manual_seed(seed))


@functools.cache
def _hopper(n: int, size: int) -> np.ndarray:
    """n different real photographs: square crops of matplotlib's Grace Hopper portrait."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB")
        img.load()
    rng, (w, h), out = np.random.default_rng(0), img.size, []
    for _ in range(n):
        s = int(rng.integers(200, 480))
        left, top = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        out.append(np.asarray(img.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)))
    return np.stack(out).transpose(0, 3, 1, 2)


def photos(n: int = 8, size: int = SIZE) -> torch.Tensor:
    return torch.from_numpy(_hopper(n, size).copy()).float() / 255


def flat(n: int, size: int, rgb=(0.5, 0.5, 0.5)) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(n, 3, size, size).clone()


def ramp(n: int, size: int) -> torch.Tensor:
    """Channel 0 = x and channel 1 = y of each pixel centre, as (u + 1) / 2 of the [-1, 1] coords."""
    c = (torch.arange(size) + 0.5) / size
    r = torch.stack([c.view(1, -1).expand(size, size), c.view(-1, 1).expand(size, size), torch.full((size, size), 0.5)])
    return r.expand(n, 3, size, size).clone()


def fit_affine(out: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N x 2 x 3 maps output -> input in [-1, 1] coords, N residuals) fitted to a warped ramp,
    only where the source lies inside the image (bilinear sampling of a linear ramp is exact there)."""
    n, _, s, _ = out.shape
    u = (torch.arange(s, dtype=torch.float64) + 0.5) / s * 2 - 1
    v, u = torch.meshgrid(u, u, indexing="ij")
    design = torch.stack([u.flatten(), v.flatten(), torch.ones(s * s, dtype=torch.float64)], 1)  # P x 3
    src = (out[:, :2].double() * 2 - 1).flatten(2).transpose(1, 2)  # N x P x 2
    keep = ((u.abs() < 0.5) & (v.abs() < 0.5)).flatten().expand(n, -1).double()  # maps inside for every op tested
    inner = 1 - 1 / s - 1e-4
    for _ in range(2):  # fit on the centre, then on every pixel the fit says samples inside the image
        wa = design * keep.unsqueeze(2)
        theta = torch.linalg.solve(wa.transpose(1, 2) @ design, wa.transpose(1, 2) @ src).transpose(1, 2)
        pred = design @ theta.transpose(1, 2)
        keep = (pred.abs() < inner).all(2).double()
    return theta.numpy(), ((pred - src).abs().amax(2) * keep).amax(1).numpy()


def read_affine(out: torch.Tensor) -> np.ndarray:
    """The fitted maps; a residual above float noise means the op was not an affine warp."""
    theta, residual = fit_affine(out)
    assert residual.max() < 1e-5, residual
    return theta


def warp_reference(x: torch.Tensor, theta: np.ndarray) -> torch.Tensor:
    """scipy bilinear resampling (half-sample symmetric border = torch's reflection padding)."""
    s = x.shape[-1]
    u = (np.arange(s) + 0.5) / s * 2 - 1
    v, u = np.meshgrid(u, u, indexing="ij")
    src = np.einsum("ij,jhw->ihw", theta, np.stack([u, v, np.ones_like(u)]))
    px, py = ((src[0] + 1) * s - 1) / 2, ((src[1] + 1) * s - 1) / 2
    out = [ndimage.map_coordinates(ch.numpy().astype(np.float64), [py, px], order=1, mode="reflect") for ch in x]
    return torch.from_numpy(np.stack(out)).float()


def to_yiq(x: torch.Tensor) -> np.ndarray:
    return np.einsum("ij,njhw->nihw", YIQ, x.double().numpy())


# ---- per-image parameters read back from probes: op -> (probe, reader, (lo, hi)) -----------


def _hue_angle(out: torch.Tensor, probe: torch.Tensor) -> np.ndarray:
    a, b = to_yiq(probe)[:, 1:, 0, 0], to_yiq(out)[:, 1:, 0, 0]
    return np.angle((b[:, 0] + 1j * b[:, 1]) / (a[:, 0] + 1j * a[:, 1]))


def _angle(theta: np.ndarray) -> np.ndarray:
    return np.arctan2(theta[:, 1, 0], theta[:, 0, 0])


def _two_greys(n: int, size: int) -> torch.Tensor:
    """Left half 0.25, right half 0.75: mean 0.5, so contrast f maps them to 0.5 -+ 0.25 f."""
    return torch.cat([flat(n, size, (0.25,) * 3)[..., : size // 2], flat(n, size, (0.75,) * 3)[..., size // 2 :]], 3)


HUE_PROBE = (0.5, 0.45, 0.55)  # low chroma: every hue rotation stays inside the RGB cube
READERS = {
    "brightness": (lambda n, s: flat(n, s), lambda o, p: o[:, 0, 0, 0].numpy() / 0.5, (0.5, 1.5)),
    "contrast": (_two_greys, lambda o, p: (o[:, 0, 0, -1] - o[:, 0, 0, 0]).numpy() / 0.5, (0.5, 1.5)),
    "saturation": (
        lambda n, s: flat(n, s, (0.6, 0.4, 0.5)),
        lambda o, p: (o[:, 0, 0, 0] - o[:, 1, 0, 0]).numpy() / 0.2,
        (0.5, 1.5),
    ),
    "hue": (lambda n, s: flat(n, s, HUE_PROBE), _hue_angle, (-0.6 * math.pi, 0.6 * math.pi)),
    "rotation": (ramp, lambda o, p: np.degrees(_angle(read_affine(o))), (-30, 30)),
    "shear": (ramp, lambda o, p: np.degrees(np.arctan(read_affine(o)[:, 0, 1])), (-20, 20)),
    "random_resized_crop": (
        ramp,
        lambda o, p: np.prod(np.diagonal(read_affine(o)[:, :, :2], axis1=1, axis2=2), 1),
        (0.3, 0.6),
    ),
}


def draws(op: str, n: int, seed: int, size: int = 16) -> np.ndarray:
    probe_fn, reader, _ = READERS[op]
    probe = probe_fn(n, size)
    return reader(aug(op, probe, seed), probe)


def test_every_op_has_a_test_config():
    assert set(STRONG) == set(list_augments())


def test_all_off_is_identity():
    x = photos()
    assert BatchAugment(OFF).enabled() == [] and torch.equal(BatchAugment(OFF)(x, torch.Generator()), x)


@pytest.mark.parametrize("op", list_augments())
def test_each_op_alone_keeps_shape_range_and_reproduces_under_a_seed(op):
    assert BatchAugment(dataclasses.replace(OFF, **STRONG[op])).enabled() == [op]
    x = photos()
    a, b, c = aug(op, x, 1), aug(op, x, 1), aug(op, x, 2)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)  # same seed, same batch
    assert op == "hflip" or not torch.equal(a, c)  # a p=1 flip is the only op the seed does not change


@pytest.mark.parametrize("op", sorted(READERS))
def test_per_image_draws_follow_their_law_independently_across_the_batch(op):
    """Uniform on the configured range (Kolmogorov-Smirnov), no correlation between neighbours in
    the batch (|r| < 4 / sqrt(n)), one value per image, same draws for the same seed."""
    _, _, (lo, hi) = READERS[op]
    d = draws(op, N_DRAWS, seed=0)
    assert d.min() >= lo - 1e-4 and d.max() <= hi + 1e-4
    assert stats.kstest(d, "uniform", args=(lo, hi - lo)).pvalue > 1e-3
    assert abs(np.corrcoef(d[:-1], d[1:])[0, 1]) < 4 / math.sqrt(N_DRAWS)
    assert len(np.unique(d.round(6))) == N_DRAWS
    assert np.array_equal(d, draws(op, N_DRAWS, seed=0)) and not np.allclose(d, draws(op, N_DRAWS, seed=1))


def test_identical_images_in_one_batch_get_different_transforms():
    x = photos(1).expand(16, -1, -1, -1)
    cfg = dataclasses.replace(AugmentCfg(image_size=SIZE), brightness=0.3, hue=0.05, gaussian_noise=0.02)
    out = BatchAugment(cfg)(x.clone(), torch.Generator().manual_seed(0))
    diffs = [float((out[i] - out[j]).abs().mean()) for i in range(16) for j in range(i + 1, 16)]
    assert min(diffs) > 1e-3


# ---- geometry -------------------------------------------------------------------------


def test_hflip_p1_equals_torch_flip_exactly():
    """hflip alone is applied as an exact flip, not a bilinear resample (which is off by ~1e-5)."""
    x = photos()
    assert torch.equal(aug("hflip", x, 0), x.flip(3))


def test_hflip_p1_equals_torch_flip_up_to_float_rounding():
    x = photos()
    torch.testing.assert_close(aug("hflip", x, 0), x.flip(3), atol=1e-5, rtol=0)


def test_hflip_half_flips_a_binomial_share_and_leaves_the_rest():
    n = 200
    x = photos(8, 16).repeat(n // 8, 1, 1, 1)
    out = aug("hflip", x, 0, hflip=0.5)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped ^ kept).all())  # every image is exactly one of the two
    assert stats.binomtest(int(flipped.sum()), n, 0.5).pvalue > 1e-3


def test_rotation_matches_torchvision_rotate_inside_the_inscribed_disc():
    """torchvision fills the corners with black, BatchAugment reflects: compare inside the disc
    every rotation maps into the image (1.5 px margin); bilinear both sides, tolerance 1e-5."""
    x = photos()
    angles = READERS["rotation"][1](aug("rotation", ramp(8, SIZE), 5), None)
    out = aug("rotation", x, 5)
    c = torch.arange(SIZE) + 0.5 - SIZE / 2
    disc = (c.view(-1, 1) ** 2 + c.view(1, -1) ** 2).sqrt() < SIZE / 2 - 1.5
    for i, angle in enumerate(angles):
        ref = TF.rotate(x[i], float(angle), interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(out[i][:, disc], ref[:, disc], atol=1e-5, rtol=0)
    assert np.abs(angles).max() > 10  # the check covered real rotations


def test_resized_crop_box_follows_scale_and_ratio_and_pixels_match_scipy():
    theta = read_affine(aug("random_resized_crop", ramp(N_DRAWS, 16), 0))
    sw, sh, tx, ty = theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    assert np.abs(theta[:, [0, 1], [1, 0]]).max() < 1e-5  # axis-aligned: a crop, nothing else
    area, ratio = sw * sh, sw / sh  # box width and height as fractions of the image's
    assert area.min() >= 0.3 - 1e-4 and area.max() <= 0.6 + 1e-4
    assert ratio.min() >= 0.75 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4
    assert stats.kstest(np.log(ratio), "uniform", args=(math.log(0.75), math.log(4 / 3 / 0.75))).pvalue > 1e-3
    assert (np.abs(tx) <= 1 - sw + 1e-5).all() and (np.abs(ty) <= 1 - sh + 1e-5).all()  # box inside the image
    x = photos()
    theta = read_affine(aug("random_resized_crop", ramp(8, SIZE), 3))
    out = aug("random_resized_crop", x, 3)
    for i in range(8):
        torch.testing.assert_close(out[i], warp_reference(x[i], theta[i]), atol=1e-5, rtol=0)


def test_shear_is_a_pure_shear_and_pixels_match_scipy():
    x = photos()
    theta = read_affine(aug("shear", ramp(8, SIZE), 4))
    np.testing.assert_allclose(theta[:, [0, 1], [0, 1]], 1.0, atol=1e-5)
    np.testing.assert_allclose(theta[:, :, 2], 0.0, atol=1e-5)
    assert np.degrees(np.abs(np.arctan(theta[:, [0, 1], [1, 0]]))).max() <= 20 + 1e-3
    out = aug("shear", x, 4)
    for i in range(8):
        torch.testing.assert_close(out[i], warp_reference(x[i], theta[i]), atol=1e-5, rtol=0)


# ---- colour ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, reference, atol",
    [
        ("brightness", TF.adjust_brightness, 1e-6),
        # torchvision's grey is 0.2989 R, BatchAugment's 0.299 R (ITU-R 601): 1e-4 * R * |1 - f| apart at most
        ("contrast", TF.adjust_contrast, 1e-4),
        ("saturation", TF.adjust_saturation, 1e-4),
    ],
)
def test_colour_jitter_equals_torchvision_at_the_drawn_factor(op, reference, atol):
    x = photos()
    factors = draws(op, 8, seed=7, size=SIZE)
    out = aug(op, x, 7)
    for i, f in enumerate(factors):
        torch.testing.assert_close(out[i], reference(x[i], float(f)), atol=atol, rtol=0)
    assert np.abs(factors - 1).max() > 0.2


def test_hue_rotates_chroma_in_yiq_and_keeps_luma():
    x = photos()
    angles = draws("hue", 8, seed=9, size=SIZE)
    out = aug("hue", x, 9)
    for i, a in enumerate(angles):
        rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
        m = np.linalg.inv(YIQ) @ rot @ YIQ
        ref = np.einsum("ij,jhw->ihw", m, x[i].double().numpy()).clip(0, 1)
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-5)
    inside = ((out > 1e-4) & (out < 1 - 1e-4)).all(1)  # pixels the final clamp did not touch
    np.testing.assert_allclose(to_yiq(out)[:, 0][inside.numpy()], to_yiq(x)[:, 0][inside.numpy()], atol=1e-5)
    assert np.abs(angles).max() > 0.5


# ---- noise ----------------------------------------------------------------------------


def test_gaussian_noise_has_the_configured_std_and_is_added_to_the_pixels():
    n, sigma = 64, STRONG["gaussian_noise"]["gaussian_noise"]
    noise = (aug("gaussian_noise", flat(n, SIZE), 0) - 0.5).double().numpy()  # grey 0.5: no clipping at 10 sigma
    m = noise.size
    assert abs(noise.mean()) < 5 * sigma / math.sqrt(m)
    assert abs(noise.std() - sigma) < 5 * sigma / math.sqrt(2 * m)  # standard error of a normal's std
    assert stats.kstest(noise.flatten()[:20000] / sigma, "norm").pvalue > 1e-3
    per_image = noise.reshape(n, -1)
    assert abs(np.corrcoef(per_image[0], per_image[1])[0, 1]) < 5 / math.sqrt(per_image.shape[1])
    x = photos(n)
    torch.testing.assert_close(
        aug("gaussian_noise", x, 0), (x + torch.from_numpy(noise).float()).clamp(0, 1), atol=1e-6, rtol=0
    )


def test_salt_and_pepper_sets_the_configured_fraction_of_whole_pixels():
    n, p = 64, STRONG["salt_pepper"]["salt_pepper"]
    probe = aug("salt_pepper", flat(n, SIZE), 0)
    salt, pepper = (probe == 1).all(1), (probe == 0).all(1)
    assert bool(((probe == 0.5).all(1) | salt | pepper).all())  # whole pixels: all three channels together
    m = salt.numel()
    for hits in (salt, pepper):
        assert abs(float(hits.float().mean()) - p / 2) < 5 * math.sqrt(p / 2 * (1 - p / 2) / m)
    x = photos(n) * 0.9 + 0.05  # a real image with no pixel already black or white
    ref = torch.where(salt.unsqueeze(1), 1.0, torch.where(pepper.unsqueeze(1), 0.0, x))
    assert torch.equal(aug("salt_pepper", x, 0), ref)


def test_random_erasing_fills_one_box_of_the_allowed_size_with_uniform_noise():
    n = 64
    probe = aug("random_erasing", flat(n, SIZE), 0)
    changed = (probe != 0.5).any(1)
    values, areas = [], []
    for i in range(n):
        rows, cols = changed[i].any(1).nonzero().flatten(), changed[i].any(0).nonzero().flatten()
        top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        h, w = bottom - top, right - left
        assert int(changed[i].sum()) == h * w  # one full rectangle
        assert (h * w) / SIZE**2 <= 1 / 3 + (h + w) / SIZE**2 and (h * w) / SIZE**2 >= 0.02 - (h + w) / SIZE**2
        assert 0.3 - 2 / min(h, w) <= h / w <= 1 / 0.3 + 2 / min(h, w)  # aspect, up to rounding to whole pixels
        values.append(probe[i, :, top:bottom, left:right].flatten())
        areas.append(h * w / SIZE**2)
    assert stats.kstest(torch.cat(values).numpy()[:20000], "uniform").pvalue > 1e-3
    x = photos(n)
    out = aug("random_erasing", x, 0)
    assert torch.equal(out[~changed.unsqueeze(1).expand_as(x)], x[~changed.unsqueeze(1).expand_as(x)])
    assert torch.equal(out[changed.unsqueeze(1).expand_as(x)], probe[changed.unsqueeze(1).expand_as(x)])
    half = (aug("random_erasing", flat(200, 16), 1, reprob=0.5) != 0.5).flatten(1).any(1)
    assert stats.binomtest(int(half.sum()), 200, 0.5).pvalue > 1e-3


# ---- auto-augment and everything together --------------------------------------------


def test_trivial_augment_geometric_draws_are_single_ops_within_their_ranges():
    """TrivialAugment picks one op per image. On the ramp probe a geometric op is an affine warp
    that leaves the flat third channel at 0.5: each must be one rotation <= 30 deg, one shear
    <= 0.3 or one translation <= 0.45 of the image. Pixel ops that are affine on this ramp all scale
    it about its centre (contrast by its factor, autocontrast by S / (S - 1), a full solarize by
    -1); no geometric op does, so those are skipped."""
    n = 96
    out = aug("auto_augment", ramp(n, SIZE), 0, auto_augment="trivial")
    theta, residual = fit_affine(out)
    moved_only = (out[:, 2] - 0.5).flatten(1).abs().amax(1).numpy() < 1e-4
    kinds = []
    for t in theta[(residual < 1e-5) & moved_only]:
        a, (shx, shy), shift = t[:, :2], (t[0, 1], t[1, 0]), t[:, 2]
        no_shift = np.allclose(shift, 0, atol=1e-4)
        if no_shift and np.allclose(a, a[0, 0] * np.eye(2), atol=1e-4):
            continue  # identity (or sharpness: a linear ramp has nothing to sharpen), contrast, autocontrast, solarize
        if no_shift and abs(a[0, 0] - a[1, 1]) < 1e-4 and abs(shx + shy) < 1e-4:
            assert abs(np.linalg.det(a) - 1) < 1e-4 and abs(math.degrees(math.atan2(a[1, 0], a[0, 0]))) <= 30 + 1e-3
            kinds.append("rotate")
        elif no_shift:
            assert np.allclose(np.diag(a), 1, atol=1e-4) and min(abs(shx), abs(shy)) < 1e-4
            assert max(abs(shx), abs(shy)) <= 0.3 + 1e-4
            kinds.append("shear")
        else:
            assert np.allclose(a, np.eye(2), atol=1e-4) and np.abs(shift).min() < 1e-4
            assert np.abs(shift).max() <= 2 * 0.45 + 1e-4  # [-1, 1] coords: 0.45 of the width is 0.9
            kinds.append("translate")
    assert {"rotate", "shear", "translate"} <= set(kinds)


def test_everything_together_and_half_precision():
    cfg = dataclasses.replace(
        AugmentCfg(image_size=SIZE),
        auto_augment="trivial",
        shear=5.0,
        brightness=0.2,
        hue=0.05,
        gaussian_noise=0.02,
        reprob=0.5,
    )
    x = photos()
    out = BatchAugment(cfg)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    half = BatchAugment(cfg)(x.half(), torch.Generator().manual_seed(0))
    assert half.dtype == torch.float16
    assert float((half.float() - out).abs().mean()) < 0.01  # same draws, fp16 rounding only


def test_bad_policy_names_fail_clearly():
    with pytest.raises(ConfigError, match=r"augment\.auto_augment.*'magic'.*valid: \['none', 'trivial', 'rand'\]"):
        BatchAugment(dataclasses.replace(OFF, auto_augment="magic"))
    with pytest.raises(ConfigError, match=r"augment\.scale"):
        BatchAugment(dataclasses.replace(OFF, scale=(0.9, 0.5)))


# ---- CUDA -----------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("op", list_augments())
def test_cuda_reproduces_under_a_seed_and_agrees_with_cpu_draws(op):
    """Per-image parameters come from the CPU generator, so CUDA and CPU apply the same transform;
    pixel noise comes from a device generator, so it reproduces per device, not across devices."""
    x = photos()
    a, b = aug(op, x.cuda(), 3), aug(op, x.cuda(), 3)
    assert a.is_cuda and torch.equal(a, b)
    if op in READERS:
        probe = READERS[op][0](8, SIZE)
        gpu = READERS[op][1](aug(op, probe.cuda(), 3).cpu(), probe)
        np.testing.assert_allclose(gpu, READERS[op][1](aug(op, probe, 3), probe), atol=1e-4)
    if op not in ("gaussian_noise", "salt_pepper", "random_erasing", "auto_augment"):
        torch.testing.assert_close(a.cpu(), aug(op, x, 3), atol=1e-4, rtol=0)
    if op == "gaussian_noise":
        noise = aug(op, flat(64, SIZE).cuda(), 0) - 0.5
        assert abs(float(noise.std()) - 0.05) < 5 * 0.05 / math.sqrt(2 * noise.numel())
