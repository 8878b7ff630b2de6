"""Byte-stable outputs: the same content gives the same file, so DVC sees no change.

torch.save used to name the archive's inner folder after atomic_path's random temp file, so
identical weights got a new md5 on every run and DVC reran everything downstream of `train`.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from tests.conftest import tiny_params_dict
from vistune.config import parse_params
from vistune.io import save_torch
from vistune.layout import Layout

FAST = {"model": "timm:resnet10t", "pretrained": "none", "epochs": 1}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_same_state_saved_to_two_paths_is_the_same_bytes(tmp_path: Path):
    state = {"state_dict": {"w": torch.arange(12.0).reshape(3, 4), "b": torch.zeros(4)}, "classes": ["a", "b"]}
    a, b = tmp_path / "one" / "model.pt", tmp_path / "two" / "other-name.pt"
    save_torch(state, a)
    save_torch(state, b)
    assert a.read_bytes() == b.read_bytes()
    assert {n.split("/")[0] for n in zipfile.ZipFile(a).namelist()} == {"archive"}  # not the temp file's name
    loaded = torch.load(a, weights_only=True)
    assert torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"]) and loaded["classes"] == ["a", "b"]
    assert not [p for p in a.parent.iterdir() if p != a]  # no temp file left beside it
    state["state_dict"]["b"][0] = 1.0  # different content: different bytes
    save_torch(state, b)
    assert a.read_bytes() != b.read_bytes()


def test_two_train_runs_write_the_same_model_file(prepared_tiny: Layout, tmp_path: Path):
    from stages import train

    p = parse_params(tiny_params_dict(train=FAST))
    models = []
    for name in ("first", "second"):
        lay = Layout(tmp_path / name)
        shutil.copytree(prepared_tiny.prepared, lay.prepared)
        train.run(p.train, p.augment, lay, progress=False)
        models.append(lay.model)
    first, second = (torch.load(m, weights_only=True)["state_dict"] for m in models)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)  # bitwise-identical weights...
    assert _md5(models[0]) == _md5(models[1])  # ... so the same md5 for DVC


def test_plot_png_has_no_software_chunk(tmp_path: Path):
    from PIL import Image

    from vistune.evaluate.plots import confusion_matrix_png

    cm = np.array([[3, 1], [0, 4]])
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    confusion_matrix_png(cm, ["x", "y"], a)
    confusion_matrix_png(cm, ["x", "y"], b)
    assert a.read_bytes() == b.read_bytes()
    assert "Software" not in Image.open(a).info
