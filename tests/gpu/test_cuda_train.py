"""The CUDA path, run for real (`pytest -m gpu`; skipped without a CUDA device).

The step loop must never wait for the host: after a warm-up epoch, one more epoch runs under
`torch.cuda.set_sync_debug_mode("error")`, which raises on any synchronizing call. Then bf16 and
fp16 (+ GradScaler), torch.compile, channels_last from training to the served model, and resume.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.vistune.test_trainer import ACFG, TCFG, _backbone, tiny_data
from vistune.models.classifier import Classifier, save_model
from vistune.models.device_policy import amp_dtype
from vistune.train.feed import TrainFeed
from vistune.train.finetune import create_strategy
from vistune.train.loop import fit
from vistune.train.steps import cross_entropy, epoch_order, run_epoch, setup

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

GPU = dataclasses.replace(TCFG, device="cuda", batch_size=16)
RECIPES = {
    "plain": ({}, {}),
    "full_recipe": (
        {
            "model_ema": True,
            "model_ema_decay": 0.9,
            "clip_grad": 1.0,
            "class_weighting": "loss",
            "adversarial": "fgsm",
            "adv_fraction": 0.5,
        },
        {"mixup": 0.2, "cutmix": 1.0, "brightness": 0.2, "hue": 0.05, "reprob": 0.25, "auto_augment": "trivial"},
    ),
}


def _run(tcfg, acfg, data, device_fraction: float = 0.25):
    b = _backbone(tcfg)
    run = setup(
        b,
        create_strategy(tcfg.strategy, tcfg),
        tcfg,
        acfg,
        torch.from_numpy(data.splits["train"].labels),
        len(data.classes),
    )
    x, y = data.tensors("train")
    return run, TrainFeed(x, y, run.device, tcfg.batch_size, device_fraction)


@pytest.mark.parametrize("where", ["on_device", "pinned_prefetch"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_step_loop_never_syncs(recipe, where):
    over, aover = RECIPES[recipe]
    tcfg, acfg = dataclasses.replace(GPU, **over), dataclasses.replace(ACFG, **aover)
    data = tiny_data(n=64, size=32)
    run, feed = _run(tcfg, acfg, data, 0.25 if where == "on_device" else 0.0)
    assert feed.on_device == (where == "on_device")
    loss_fn = cross_entropy(run)
    for epoch in range(2):
        order, g = epoch_order(tcfg.seed, epoch, len(feed.y), run.dist)
        if epoch == 1:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            stats = run_epoch(run, feed, order, g, epoch, loss_fn)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert stats.seen == 64 and np.isfinite(float(stats.loss_sum))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_bf16_and_fp16_train(dtype):
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    tcfg = dataclasses.replace(GPU, amp_dtype=dtype, epochs=2)
    data = tiny_data(n=64, size=32)
    run, _ = _run(tcfg, ACFG, data)
    assert amp_dtype(run.device, True, dtype) == getattr(torch, dtype)
    assert run.scaler.is_enabled() == (dtype == "float16")  # GradScaler only for fp16
    b = _backbone(tcfg)
    res = fit(b, create_strategy("full", tcfg), data, tcfg, ACFG, progress=False)
    assert all(np.isfinite(r["train_loss"]) for r in res.history)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"] + 0.5


def test_compile_trains():
    tcfg = dataclasses.replace(GPU, compile=True, epochs=2)
    b = _backbone(tcfg)
    res = fit(b, create_strategy("full", tcfg), tiny_data(n=64, size=32), tcfg, ACFG, progress=False)
    assert all(np.isfinite(r["train_loss"]) for r in res.history)
    assert set(res.state_dict) == set(b.model.state_dict())  # plain keys, no _orig_mod. prefix


def test_channels_last_end_to_end(tmp_path):
    data = tiny_data(n=64, size=32)
    run, _ = _run(GPU, ACFG, data)
    conv = [m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)][0]
    assert conv.weight.is_cuda and conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.from_numpy(data.splits["val"].images).cuda()
    assert run.backbone.normalizer(x).is_contiguous(memory_format=torch.channels_last)
    b = _backbone(GPU)
    res = fit(b, create_strategy("full", GPU), data, GPU, ACFG, progress=False)
    save_model(tmp_path / "model.pt", b, res.state_dict, data.classes, 32, extra={})
    gpu, cpu = Classifier.load(tmp_path / "model.pt", device="cuda"), Classifier.load(tmp_path / "model.pt")
    gconv = [m for m in gpu.backbone.model.modules() if isinstance(m, torch.nn.Conv2d)][0]
    assert gconv.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.from_numpy(data.splits["test"].images)
    assert torch.allclose(gpu.logits(images), cpu.logits(images), atol=0.1, rtol=0.05)  # bf16/fp16 vs fp32


def test_resume_on_gpu(tmp_path):
    tcfg = dataclasses.replace(GPU, epochs=2)
    data = tiny_data(n=64, size=32)
    whole = fit(
        _backbone(tcfg), create_strategy("full", tcfg), data, tcfg, ACFG, progress=False, checkpoint=tmp_path / "a.pt"
    )

    def crash(epoch: int) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            _backbone(tcfg),
            create_strategy("full", tcfg),
            data,
            tcfg,
            ACFG,
            progress=False,
            checkpoint=tmp_path / "b.pt",
            on_epoch_end=crash,
        )
    resumed = fit(
        _backbone(tcfg), create_strategy("full", tcfg), data, tcfg, ACFG, progress=False, checkpoint=tmp_path / "b.pt"
    )
    assert resumed.resumed_from_epoch == 1 and len(resumed.history) == 2
    # cuDNN autotuning picks kernels per run, so equal up to float noise rather than bit for bit
    assert resumed.history[1]["train_loss"] == pytest.approx(whole.history[1]["train_loss"], rel=0.05, abs=0.05)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_ddp_two_nccl_ranks_with_sync_bn(tmp_path):
    from tests.stages.test_ddp import check_two_ranks

    check_two_ranks(tmp_path, "nccl")
