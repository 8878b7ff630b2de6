"""Every batch op keeps shape/dtype, is deterministic under a seed, and really changes the image."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vistune.train.augment import BatchAugment, list_augments
from vistune.config import AugmentCfg
from vistune.errors import ConfigError
from vistune.train.mix import mix_batch, soft_targets

OFF = AugmentCfg(image_size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, rotation=0.0, salt_pepper=0.0)
STRONG = {
    "random_resized_crop": {"scale": (0.3, 0.6)}, "hflip": {"hflip": 1.0}, "rotation": {"rotation": 30.0},
    "shear": {"shear": 20.0}, "brightness": {"brightness": 0.5}, "contrast": {"contrast": 0.5},
    "saturation": {"saturation": 0.5}, "hue": {"hue": 0.3}, "gaussian_noise": {"gaussian_noise": 0.1},
    "salt_pepper": {"salt_pepper": 0.2}, "auto_augment": {"auto_augment": "rand", "aa_num_ops": 3, "aa_magnitude": 0.9},
    "random_erasing": {"reprob": 1.0},
}


def batch() -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_every_op_has_a_test_config():
    assert set(STRONG) == set(list_augments())


def test_all_off_is_identity():
    x = batch()
    assert BatchAugment(OFF).enabled() == [] and torch.equal(BatchAugment(OFF)(x, torch.Generator()), x)


@pytest.mark.parametrize("op", list_augments())
def test_op_shape_dtype_determinism_and_effect(op):
    aug = BatchAugment(dataclasses.replace(OFF, **STRONG[op]))
    assert aug.enabled() == [op]
    x = batch()
    a = aug(x.clone(), torch.Generator().manual_seed(1))
    b = aug(x.clone(), torch.Generator().manual_seed(1))
    c = aug(x.clone(), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b)  # same seed, same batch
    assert not torch.allclose(a, x, atol=1e-3)  # the op did something
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    if op != "hflip":  # p=1 flip is the same for every seed
        assert not torch.equal(a, c)


def test_trivial_augment_and_everything_together():
    cfg = dataclasses.replace(AugmentCfg(image_size=16), auto_augment="trivial", shear=5.0, brightness=0.2, hue=0.05,
                              gaussian_noise=0.02, reprob=0.5)
    x = batch()
    out = BatchAugment(cfg)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.allclose(out, x)
    half = BatchAugment(cfg)(x.half(), torch.Generator().manual_seed(0))
    assert half.dtype == torch.float16


def test_bad_policy_names_fail_clearly():
    with pytest.raises(ConfigError, match="auto_augment"):
        BatchAugment(dataclasses.replace(OFF, auto_augment="magic"))


@pytest.mark.parametrize("mixup,cutmix", [(0.4, 0.0), (0.0, 1.0)])
def test_mixup_cutmix_soft_targets(mixup, cutmix):
    x, y = batch(), torch.tensor([0, 1, 2, 0, 1, 2])
    t = soft_targets(y, 3, smoothing=0.1)
    assert torch.allclose(t.sum(1), torch.ones(6)) and t[0, 0] == pytest.approx(0.9 + 0.1 / 3)
    mx, mt = mix_batch(x, t, mixup, cutmix, torch.Generator().manual_seed(0))
    assert mx.shape == x.shape and not torch.equal(mx, x)
    assert torch.allclose(mt.sum(1), torch.ones(6)) and not torch.equal(mt, t)
    mx2, _ = mix_batch(x, t, mixup, cutmix, torch.Generator().manual_seed(0))
    assert torch.equal(mx, mx2)
    same, st = mix_batch(x, t, 0.0, 0.0, torch.Generator())
    assert same is x and st is t
