"""FGSM/PGD on [0, 1] pixels, and adversarial fine-tuning making a tiny real model harder to fool."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vistune.train.adversarial import check_adversarial, eval_mode, fgsm, is_adversarial_batch, pgd
from vistune.models.backbones import create_backbone
from vistune.config import AugmentCfg, TrainCfg
from vistune.data.prepared import PreparedData, SplitArrays
from vistune.errors import ConfigError
from vistune.train.finetune import create_strategy
from vistune.data.preprocess import normalize
from vistune.train.loop import fit

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def norm(x: torch.Tensor) -> torch.Tensor:
    return normalize(x, MEAN, STD)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 4),
    )


def batch(n: int = 16, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand((n, 3, size, size), generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "pgd_random"])
def test_attacks_stay_in_the_ball_raise_the_loss_and_leave_the_model_alone(attack: str) -> None:
    net, (x, y), eps = small_net(), batch(), 0.03
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.995])  # pixels at the range's edges stay in [0, 1]
    net.train()
    net[3].eval()  # a module a strategy froze must stay frozen
    bn_before = net[1].running_mean.clone()
    if attack == "fgsm":
        adv = fgsm(net, x, y, eps, norm)
    else:
        adv = pgd(
            net,
            x,
            y,
            eps,
            norm,
            steps=5,
            random_start=attack == "pgd_random",
            generator=torch.Generator().manual_seed(0),
        )
    assert adv.shape == x.shape and not adv.requires_grad
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    with eval_mode(net), torch.no_grad():
        clean_loss, adv_loss = F.cross_entropy(net(norm(x)), y), F.cross_entropy(net(norm(adv)), y)
    assert float(adv_loss) > float(clean_loss) + 0.01
    assert all(p.grad is None for p in net.parameters())  # no gradient leaked into the weights
    assert torch.equal(net[1].running_mean, bn_before)  # BatchNorm statistics untouched
    assert net.training and net[1].training and not net[3].training  # each module's mode restored


def test_pgd_is_at_least_as_strong_as_fgsm_and_soft_targets_work() -> None:
    net, (x, y), eps = small_net(), batch(), 0.05
    net.eval()
    with torch.no_grad():
        loss = {
            name: float(F.cross_entropy(net(norm(a)), y))
            for name, a in {
                "fgsm": fgsm(net, x, y, eps, norm),
                "pgd": pgd(net, x, y, eps, norm, steps=10, random_start=False),
            }.items()
        }
    assert loss["pgd"] >= loss["fgsm"] - 1e-4
    soft = F.one_hot(y, 4).float() * 0.9 + 0.025  # mixup / smoothing targets are probabilities
    assert float((pgd(net, x, soft, eps, norm, steps=2) - x).abs().max()) <= eps + 1e-6


@pytest.fixture(scope="module")
def trained_digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(normalized net, [0, 1] images, labels): a small conv net trained for 150 Adam steps on
    scikit-learn's 8x8 digits (upscaled to 16 px, 3 channels); held-out accuracy 0.86."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images / 16.0).float().unsqueeze(1)
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(d.target).long()
    torch.manual_seed(0)
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    net = nn.Sequential(Normalize(), body)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: intra-op threads only spin on a loaded 2-core box (measured 56 s vs 1.7 s)
    try:
        for _ in range(150):
            idx = torch.randint(1500, (64,), generator=g)
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    net.eval()
    with torch.no_grad():
        assert float((net(x[1500:]).argmax(1) == y[1500:]).float().mean()) > 0.8
    return net, x[1500:1628], y[1500:1628]


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return norm(x)


def test_fgsm_is_the_signed_gradient_step_clipped_to_the_pixel_range(trained_digits) -> None:
    net, x, y = trained_digits
    x0 = x.clone().requires_grad_(True)
    F.cross_entropy(net(x0), y).backward()  # an independent gradient, through torch autograd
    expected = (x + 0.05 * x0.grad.sign()).clamp(0, 1)
    torch.testing.assert_close(fgsm(net, x, y, 0.05), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("eps", [0.02, 0.06])
def test_attacks_on_a_trained_model_stay_in_the_ball_and_raise_its_loss(trained_digits, eps: float) -> None:
    net, x, y = trained_digits
    adv = {"fgsm": fgsm(net, x, y, eps), "pgd": pgd(net, x, y, eps, steps=10, random_start=False)}
    with torch.no_grad():
        clean_loss, clean_acc = float(F.cross_entropy(net(x), y)), float((net(x).argmax(1) == y).float().mean())
        for name, a in adv.items():
            assert float((a - x).abs().max()) <= eps + 1e-6, name
            assert float(a.min()) >= 0 and float(a.max()) <= 1, name
            loss, acc = float(F.cross_entropy(net(a), y)), float((net(a).argmax(1) == y).float().mean())
            assert loss > clean_loss * 1.5 and acc < clean_acc, (name, loss, clean_loss, acc, clean_acc)
        assert F.cross_entropy(net(adv["pgd"]), y) >= F.cross_entropy(net(adv["fgsm"]), y) - 1e-4


def test_adversarial_batches_are_spread_evenly() -> None:
    for fraction in (1.0, 0.5, 0.25, 0.3):
        picked = [k for k in range(100) if is_adversarial_batch(k, fraction)]
        assert len(picked) == round(100 * fraction)
    assert all(is_adversarial_batch(k, 1.0) for k in range(10))


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"kind": "bim"}, "train.adversarial"),
        ({"eps": 0.0}, "train.adv_epsilon"),
        ({"eps": 8.0}, "train.adv_epsilon"),
        ({"steps": 0}, "train.adv_steps"),
        ({"fraction": 0.0}, "train.adv_fraction"),
        ({"step_size": -1.0}, "train.adv_step_size"),
    ],
)
def test_bad_adversarial_options_name_the_key(kw: dict, key: str) -> None:
    args = {"kind": "pgd", "eps": 0.03, "steps": 3, "step_size": 0.0, "fraction": 0.5, **kw}
    with pytest.raises(ConfigError, match=key):
        check_adversarial(**args)
    check_adversarial("none", 0.0, 0, -1.0, 0.0)  # options are ignored when training is plain


def two_feature_data(n: int, seed: int = 0, size: int = 16) -> PreparedData:
    """Two classes told apart by a robust feature (one half brighter by 0.15) and a fragile one (a
    +-0.05 checkerboard). Plain training leans on the checkerboard, which an eps = 0.08 attack flips;
    adversarial training has to use the brightness, which it cannot."""
    rng = np.random.default_rng(seed)
    checker = ((np.indices((size, size)).sum(0) % 2) * 2 - 1)[None, None]

    def split(m: int) -> SplitArrays:
        y = rng.integers(0, 2, m)
        sign = np.where(y == 1, 1.0, -1.0)[:, None, None, None]
        x = np.full((m, 3, size, size), 0.5) + sign * checker * 0.05
        x[:, :, :, : size // 2] += sign * 0.15
        x = x + rng.normal(0, 0.08, x.shape)
        return SplitArrays((np.clip(x, 0, 1) * 255).round().astype(np.uint8), y.astype(np.int64))

    return PreparedData(["a", "b"], size, {"train": split(n), "val": split(32), "test": split(128)})


def _train(data: PreparedData, adversarial: str, **kw) -> tuple[float, float]:
    """(clean, FGSM eps 0.08) test accuracy after one CPU epoch of resnet10t from scratch."""
    tcfg = TrainCfg(
        model="timm:resnet10t",
        pretrained="none",
        epochs=1,
        batch_size=32,
        lr=3e-3,
        warmup_epochs=0.1,
        patience=0,
        smoothing=0.0,
        device="cpu",
        seed=0,
        adversarial=adversarial,
        adv_epsilon=0.08,
        adv_fraction=1.0,
        **kw,
    )
    acfg = AugmentCfg(image_size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, rotation=0.0, salt_pepper=0.0)
    torch.manual_seed(0)
    b = create_backbone(tcfg.model, 2, "none")
    res = fit(b, create_strategy("full", tcfg), data, tcfg, acfg, progress=False)
    b.model.load_state_dict(res.state_dict)
    b.model.eval()
    x, y = data.tensors("test")
    x01 = x.float() / 255
    prep = lambda t: normalize(t, b.mean, b.std)  # noqa: E731
    with torch.no_grad():
        clean = float((b.model(prep(x01)).argmax(1) == y).float().mean())
    adv = fgsm(b.model, x01, y, 0.08, prep)
    with torch.no_grad():
        robust = float((b.model(prep(adv)).argmax(1) == y).float().mean())
    return clean, robust


def test_adversarial_training_improves_fgsm_accuracy() -> None:
    data = two_feature_data(512)
    plain_clean, plain_fgsm = _train(data, "none")
    adv_clean, adv_fgsm = _train(data, "fgsm")
    assert plain_clean >= 0.9 and adv_clean >= 0.9  # both learned the task
    assert plain_fgsm < 0.8  # the plain model is fooled...
    assert adv_fgsm >= plain_fgsm + 0.2  # ...the adversarially trained one much less


def test_pgd_training_with_mixup_ema_and_class_weights_runs() -> None:
    data = two_feature_data(64, seed=1)
    tcfg = TrainCfg(
        model="timm:test_resnet",
        pretrained="none",
        epochs=1,
        batch_size=16,
        device="cpu",
        patience=0,
        model_ema=True,
        model_ema_decay=0.9,
        class_weighting="loss",
        adversarial="pgd",
        adv_epsilon=0.03,
        adv_steps=2,
        adv_fraction=0.5,
    )
    acfg = AugmentCfg(image_size=16, mixup=0.2, cutmix=0.2)
    torch.manual_seed(0)
    b = create_backbone(tcfg.model, 2, "none")
    res = fit(b, create_strategy("full", tcfg), data, tcfg, acfg, progress=False)
    assert len(res.history) == 1 and np.isfinite(res.history[0]["train_loss"])
