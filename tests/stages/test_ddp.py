"""`torchrun --nproc-per-node 2 -m stages.train` trains data-parallel on gloo and rank 0 writes once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.conftest import REPO, tiny_params_dict, write_params
from vistune.models.classifier import Classifier
from vistune.io import read_json
from vistune.layout import Layout


def test_ddp_two_gloo_processes(prepared_tiny, tmp_path):
    lay = Layout(tmp_path)
    shutil.copytree(prepared_tiny.prepared, lay.prepared)
    params = tiny_params_dict(train={"model": "timm:resnet10t", "pretrained": "none", "device": "cpu", "batch_size": 8})
    write_params(tmp_path / "params.yaml", params)
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nnodes", "1", "--nproc-per-node", "2", "-m", "stages.train",
           "--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("x2 (DDP)") == 1  # only rank 0 reports
    assert sorted(p.name for p in lay.checkpoint.parent.iterdir()) == ["last.pt"]
    assert sorted(p.name for p in lay.model_dir.iterdir()) == ["history.csv", "metrics.json", "model.pt"]
    assert read_json(lay.train_metrics)["world_size"] == 2
    assert len(pd.read_csv(lay.train_history)) == 1
    Classifier.load(lay.model)
