"""Stage `train`: writes a loadable model, history and metrics; resumes after a SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import REPO, tiny_params_dict, write_params
from vistune.models.classifier import Classifier
from vistune.config import parse_params
from vistune.io import read_json
from vistune.layout import Layout

FAST = {"model": "timm:resnet10t", "pretrained": "none"}


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


def test_train_resumes_after_sigkill(prepared_tiny, tmp_path):
    lay = _copy_prepared(prepared_tiny, tmp_path)
    params = tiny_params_dict(train={**FAST, "epochs": 3, "batch_size": 4})
    write_params(tmp_path / "params.yaml", params)
    cmd = [sys.executable, "-m", "stages.train", "--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
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
