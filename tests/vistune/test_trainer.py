"""The training loop on tiny synthetic data: recipe options run, resume equals an uninterrupted run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vistune.models.backbones import create_backbone
from vistune.config import AugmentCfg, TrainCfg
from vistune.data.prepared import PreparedData, SplitArrays
from vistune.errors import ConfigError
from vistune.train.finetune import create_strategy
from vistune.train.loop import class_weights, fit
from vistune.models.device_policy import predict_logits, resolve_device

HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_s"}


def tiny_data(n: int = 40, size: int = 16, classes: int = 4, seed: int = 0, skew: bool = False) -> PreparedData:
    """Class k is a noisy image whose mean colour depends on k: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def split(m: int) -> SplitArrays:
        y = rng.integers(0, classes, m) if not skew else np.where(rng.random(m) < 0.8, 0, rng.integers(1, classes, m))
        base = np.stack([(y * 60) % 256, (y * 120) % 256, 255 - y * 50], 1)[:, :, None, None]
        x = np.clip(base + rng.normal(0, 25, (m, 3, size, size)), 0, 255).astype(np.uint8)
        return SplitArrays(x, y.astype(np.int64))

    return PreparedData(
        [f"c{i}" for i in range(classes)], size, {"train": split(n), "val": split(12), "test": split(12)}
    )


TCFG = TrainCfg(
    model="timm:resnet10t",
    pretrained="none",
    epochs=2,
    batch_size=16,
    lr=3e-3,
    warmup_epochs=0.5,
    patience=0,
    device="cpu",
    seed=3,
)
ACFG = AugmentCfg(image_size=16, hflip=0.5, rotation=10.0, salt_pepper=0.02)


def _backbone(tcfg: TrainCfg = TCFG):
    torch.manual_seed(0)
    return create_backbone(tcfg.model, 4, tcfg.pretrained, drop_rate=tcfg.drop_rate, drop_path_rate=tcfg.drop_path_rate)


def _fit(tcfg: TrainCfg, acfg: AugmentCfg = ACFG, data: PreparedData | None = None, **kw):
    b = _backbone(tcfg)
    return b, fit(b, create_strategy(tcfg.strategy, tcfg), data or tiny_data(), tcfg, acfg, progress=False, **kw)


def test_fit_history_and_predict_api():
    b, res = _fit(TCFG)
    assert [r["epoch"] for r in res.history] == [1, 2]
    assert all(HISTORY_KEYS <= set(r) for r in res.history)
    assert all(r["images_per_s"] > 0 and np.isfinite(r["train_loss"]) for r in res.history)
    assert set(res.state_dict) == set(b.model.state_dict())
    logits = predict_logits(b, torch.from_numpy(tiny_data().splits["val"].images), resolve_device("cpu"), 8, True)
    assert logits.shape == (12, 4) and logits.dtype == torch.float32


@pytest.mark.parametrize(
    "over",
    [
        {"model_ema": True, "model_ema_decay": 0.9, "clip_grad": 1.0, "drop_rate": 0.2, "drop_path_rate": 0.1},
        {"class_weighting": "loss"},
        {"class_weighting": "sampler", "strategy": "lora"},
    ],
    ids=["ema_clip_drop", "weighted_loss", "sampler_lora"],
)
def test_recipe_options_train(over):
    tcfg = dataclasses.replace(TCFG, epochs=1, **over)
    acfg = dataclasses.replace(ACFG, mixup=0.4, cutmix=1.0)
    b, res = _fit(tcfg, acfg, tiny_data(skew=True))
    row = res.history[0]
    assert np.isfinite(row["train_loss"]) and 0 <= row["val_accuracy"] <= 1
    if tcfg.model_ema:
        assert "raw_val_accuracy" in row  # both the raw and the EMA weights were validated
    fresh = _backbone(tcfg)
    fresh.model.load_state_dict(res.state_dict)  # plain keys whatever the strategy (LoRA merged)


def test_ema_and_clipping_change_the_result():
    _, plain = _fit(dataclasses.replace(TCFG, epochs=1))
    _, ema = _fit(dataclasses.replace(TCFG, epochs=1, model_ema=True, model_ema_decay=0.5))
    _, clipped = _fit(dataclasses.replace(TCFG, epochs=1, clip_grad=1e-3))
    w = "layer1.0.conv1.weight"
    assert not torch.equal(plain.state_dict[w], ema.state_dict[w])
    assert not torch.equal(plain.state_dict[w], clipped.state_dict[w])


def test_class_weights_balance_classes():
    w = class_weights(torch.tensor([0, 0, 0, 1]), 3)
    assert torch.allclose(w, torch.tensor([4 / 9, 4 / 3, 0.0]))
    with pytest.raises(ConfigError, match="class_weighting"):
        _fit(dataclasses.replace(TCFG, class_weighting="bogus"))


def test_resume_equals_uninterrupted(tmp_path):
    """2 epochs in one go == epoch 1, a crash, then a resume from the checkpoint (same seed)."""
    tcfg = dataclasses.replace(TCFG, model_ema=True, model_ema_decay=0.9, drop_path_rate=0.1)
    acfg = dataclasses.replace(ACFG, mixup=0.2)
    data = tiny_data()
    _, whole = _fit(tcfg, acfg, data, checkpoint=tmp_path / "a.pt")

    def crash(epoch: int) -> None:
        if epoch == 0:
            raise KeyboardInterrupt("simulated kill after epoch 1")

    with pytest.raises(KeyboardInterrupt):
        _fit(tcfg, acfg, data, checkpoint=tmp_path / "b.pt", on_epoch_end=crash)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["epoch"] == 0
    _, resumed = _fit(tcfg, acfg, data, checkpoint=tmp_path / "b.pt")
    assert resumed.resumed_from_epoch == 1
    strip = lambda h: [{k: v for k, v in r.items() if k != "images_per_s"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    for k, v in whole.state_dict.items():
        assert torch.equal(v, resumed.state_dict[k]), k
    last_a = torch.load(tmp_path / "a.pt", weights_only=True)
    last_b = torch.load(tmp_path / "b.pt", weights_only=True)
    for k, v in last_a["model"].items():
        assert torch.equal(v, last_b["model"][k]), k


def test_prepared_split_is_read_in_place(tmp_path):
    """`tensors()` shares the memory map: a split is never copied whole into RAM."""
    from vistune.data.prepared import load_prepared, save_meta, save_split

    data = tiny_data()
    for name, s in data.splits.items():
        save_split(tmp_path, name, s.images, s.labels)
    save_meta(tmp_path, data.classes, 16, {k: len(v) for k, v in data.splits.items()})
    loaded = load_prepared(tmp_path)
    x, y = loaded.tensors("train")
    arr = loaded.splits["train"].images
    assert isinstance(arr, np.memmap) and x.data_ptr() == arr.ctypes.data
    assert torch.equal(x, torch.from_numpy(data.splits["train"].images)) and y.dtype == torch.int64


def test_split_writer_streams_into_a_loadable_npy(tmp_path):
    from vistune.data.prepared import split_writer

    src = tiny_data().splits["train"].images
    with split_writer(tmp_path, "train", len(src), 16) as out:
        assert not (tmp_path / "train_images.npy").exists()  # lands only when complete
        for i in range(len(src)):
            out[i] = src[i]
    assert np.array_equal(np.load(tmp_path / "train_images.npy"), src)
    with pytest.raises(RuntimeError):
        with split_writer(tmp_path, "val", 3, 16):
            raise RuntimeError("decode failed half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_images.npy"]  # no partial file left


def test_fit_runs_channels_last_and_exports_plain_layout():
    b, res = _fit(dataclasses.replace(TCFG, epochs=1))
    assert b.model.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)  # trained NHWC
    assert all(v.is_contiguous() for v in res.state_dict.values())  # saved NCHW, as before


def test_fit_takes_its_own_loss():
    """`loss_fn` replaces cross-entropy for every step (what distillation plugs in)."""
    calls = []

    def loss_fn(logits, batch):
        calls.append(len(batch.y))
        return torch.nn.functional.cross_entropy(logits.float(), batch.y)

    _, res = _fit(dataclasses.replace(TCFG, epochs=2), loss_fn=loss_fn)
    assert calls == [16, 16, 8] * 2  # 40 images, batch 16, two epochs
    assert all(np.isfinite(r["train_loss"]) for r in res.history)


def test_keep_last_returns_the_final_weights_and_best_the_best_epochs(tmp_path):
    """train.keep: `last` hands back the weights of the final epoch (what the checkpoint's model holds),
    `best` those of the best-val epoch; both report which epoch they kept."""
    tcfg = dataclasses.replace(TCFG, epochs=3)
    _, last = _fit(dataclasses.replace(tcfg, keep="last"), checkpoint=tmp_path / "last.pt")
    final = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last.kept_epoch == 3 and final["kept_epoch"] == 3
    for k, v in final["model"].items():
        assert torch.equal(v, last.state_dict[k]), k
    _, best = _fit(tcfg)
    assert best.kept_epoch == best.best_epoch
    val = [r["val_accuracy"] for r in best.history]
    assert best.best_epoch == 1 + val.index(max(val))  # the first epoch with the best val accuracy
    assert [r["val_accuracy"] for r in last.history] == val  # same run; only the weights handed back differ
