"""Stage `train`: writes a loadable model, history and metrics; resumes after a SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.conftest import REPO, tiny_params_dict, write_params
from vistune.models.classifier import Classifier
from vistune.config import parse_params
from vistune.data.prepared import load_prepared
from vistune.io import read_json
from vistune.layout import Layout

FAST = {"model": "timm:resnet10t", "pretrained": "none"}
PAD = 2  # torchvision.utils.save_image padding around every tile (black)


def _copy_prepared(src: Layout, root: Path) -> Layout:
    lay = Layout(root)
    shutil.copytree(src.prepared, lay.prepared)
    return lay


@pytest.mark.parametrize("strategy", ["lora", "partial"])
def test_train_stage_writes_loadable_model(prepared_tiny, tmp_path, strategy):
    from stages import train

    lay = _copy_prepared(prepared_tiny, tmp_path)
    p = parse_params(tiny_params_dict(train={**FAST, "strategy": strategy, "unfreeze_blocks": 1, "model_ema": True}))
    res = train.run(p.train, p.augment, lay, progress=False)
    hist = pd.read_csv(lay.train_history)
    assert list(hist.epoch) == [1] and {"val_accuracy", "lr", "images_per_s"} <= set(hist.columns)
    metrics = read_json(lay.train_metrics)
    assert 0 < metrics["trainable_params"] < metrics["total_params"] and metrics["world_size"] == 1
    clf = Classifier.load(lay.model)  # LoRA adapters were merged into the plain weights
    data = torch.from_numpy(__import__("numpy").load(lay.prepared / "val_images.npy"))
    assert clf.logits(data).shape == (len(data), len(clf.classes))
    assert res.best_epoch == 1
    assert_preview_shows_eight_training_images_then_24_augmented_ones(lay)


def tiles(grid: np.ndarray, size: int) -> list[np.ndarray]:
    """Cut a save_image grid (HWC uint8) back into its CHW tiles, row by row."""
    step = size + PAD
    rows, cols = (grid.shape[0] - PAD) // step, (grid.shape[1] - PAD) // step
    return [
        grid[PAD + r * step : PAD + r * step + size, PAD + c * step : PAD + c * step + size].transpose(2, 0, 1)
        for r in range(rows)
        for c in range(cols)
    ]


def assert_preview_shows_eight_training_images_then_24_augmented_ones(lay: Layout) -> None:
    """train writes the augmentation preview: a row of training images as prepared, then augmented ones."""
    train = load_prepared(lay.prepared, splits=("train",)).splits["train"].images
    with Image.open(lay.augment_preview) as im:
        assert im.format == "PNG"
        grid = np.asarray(im.convert("RGB"))
    assert grid.shape == (PAD + 4 * (16 + PAD), PAD + 8 * (16 + PAD), 3)  # 32 tiles, 8 per row
    mask = np.ones(grid.shape[:2], bool)
    for r in range(4):
        for c in range(8):
            mask[PAD + r * 18 : PAD + r * 18 + 16, PAD + c * 18 : PAD + c * 18 + 16] = False
    assert (grid[mask] == 0).all()  # only the padding is outside the tiles
    cut = tiles(grid, 16)
    originals = {img.tobytes() for img in train}
    assert all(t.tobytes() in originals for t in cut[:8])  # the first row: training images as prepared
    assert len({t.tobytes() for t in cut[:8]}) == 8
    assert not any(t.tobytes() in originals for t in cut[8:])  # the rest went through the augmentation


def _train_cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "stages.train", "--params", str(root / "params.yaml"), "--root", str(root)]


def test_train_resumes_after_sigkill(prepared_tiny, tmp_path):
    """Killed after epoch 1's checkpoint, resumed in a new process: the same weights, bit for bit, as
    one uninterrupted run (`keep: last`, so the model written is the last epoch's, not epoch 1's)."""
    lay = _copy_prepared(prepared_tiny, tmp_path)
    params = tiny_params_dict(train={**FAST, "epochs": 3, "batch_size": 4, "keep": "last"})
    write_params(tmp_path / "params.yaml", params)
    cmd = _train_cmd(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not lay.checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-epoch 2: epoch 1's checkpoint just landed
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = torch.load(lay.checkpoint, weights_only=True)["epoch"]
    assert done < 2 and not lay.model.exists()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert f"resumed from checkpoint after epoch {done + 1}" in out.stdout
    assert list(pd.read_csv(lay.train_history).epoch) == [1, 2, 3]
    assert [p.name for p in lay.checkpoint.parent.iterdir()] == ["last.pt"]  # no temp files left
    Classifier.load(lay.model)

    straight = _copy_prepared(prepared_tiny, tmp_path / "uninterrupted")
    write_params(straight.root / "params.yaml", params)
    out = subprocess.run(
        _train_cmd(straight.root), cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0 and "resumed" not in out.stdout, out.stdout + out.stderr
    resumed, reference = (torch.load(m, weights_only=True)["state_dict"] for m in (lay.model, straight.model))
    assert resumed.keys() == reference.keys()
    assert [k for k in resumed if not torch.equal(resumed[k], reference[k])] == []  # bit-identical weights
    assert lay.model.read_bytes() == straight.model.read_bytes()  # so the same md5 for DVC
