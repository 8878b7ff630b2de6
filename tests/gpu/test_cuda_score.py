"""Batch scoring and drift embeddings on CUDA (`pytest -m gpu`; skipped without a CUDA device): the
GPU path (bf16 autocast, pinned copies, channels_last) gives the CPU's answers within bf16 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vistune.evaluate import drift
from vistune.models.backbones import create_backbone
from vistune.models.batch_predict import predict_files
from vistune.models.classifier import Classifier, save_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_scores_and_embeddings_on_cuda_match_cpu(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(40):  # smooth random colour patterns, 48 px
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).resize((48, 48)).save(files[-1])
    backbone = create_backbone("timm:tf_efficientnet_lite0", 3, pretrained="none")  # no download on the GPU box
    save_model(tmp_path / "model.pt", backbone, backbone.model.state_dict(), ["a", "b", "c"], 32, {})
    cpu, gpu = Classifier.load(tmp_path / "model.pt", "cpu"), Classifier.load(tmp_path / "model.pt", "cuda")
    assert gpu.device.type == "cuda"
    p_cpu = predict_files(cpu, files, batch_size=16, progress=False)
    p_gpu = predict_files(gpu, files, batch_size=16, progress=False)
    assert np.abs(p_cpu - p_gpu).max() < 0.05
    images = cpu.prepare([f.read_bytes() for f in files])
    f_cpu, f_gpu = drift.embed(cpu.backbone, images, cpu.device), drift.embed(gpu.backbone, images, gpu.device)
    cos = (f_cpu * f_gpu).sum(1) / (np.linalg.norm(f_cpu, axis=1) * np.linalg.norm(f_gpu, axis=1) + 1e-12)
    assert f_gpu.dtype == np.float32 and cos.min() > 0.99
