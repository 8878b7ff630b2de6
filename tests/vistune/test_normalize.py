"""Normalization is part of the model: the same numbers in train, evaluate, ONNX and the served model,
and model files keep the bare network's keys (files written before the change still load)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vistune.data.preprocess import Normalize, normalize
from vistune.models.backbones import create_backbone
from vistune.models.classifier import Classifier, save_model
from vistune.models.device_policy import place, predict_logits

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _images(n: int = 6, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def _reference(x: torch.Tensor) -> torch.Tensor:
    """The textbook formula, written independently of vistune: (x / 255 - mean) / std."""
    x01 = x.double() / 255 if x.dtype == torch.uint8 else x.double()
    return (x01 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        STD, dtype=torch.float64
    ).view(1, 3, 1, 1)


@pytest.mark.parametrize("kind", ["uint8", "float01"])
def test_normalize_matches_the_formula_and_is_channels_last(kind):
    x = _images()
    x = x if kind == "uint8" else x.float() / 255
    out = Normalize(MEAN, STD)(x)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out.double(), _reference(x), atol=1e-5)
    assert torch.allclose(normalize(x, MEAN, STD).double(), _reference(x), atol=1e-5)


def test_normalize_buffers_follow_the_module_and_stay_out_of_state_dicts():
    n = Normalize(MEAN, STD).to(torch.float64)
    assert {b.dtype for b in n.buffers()} == {torch.float64}
    assert n.state_dict() == {}
    b = create_backbone("timm:resnet10t", 3, "none")
    assert set(b.net.state_dict()) == {f"model.{k}" for k in b.model.state_dict()}


def _saved(tmp_path, state_of_net: bool = False):
    torch.manual_seed(0)
    b = create_backbone("timm:resnet10t", 3, "none")
    b = type(b)(b.model.eval(), b.spec, b.head, MEAN, STD, b.input_size)
    state = b.net.state_dict() if state_of_net else b.model.state_dict()
    path = tmp_path / "model.pt"
    save_model(path, b, state, ["a", "b", "c"], 16, extra={})
    return b, path


@pytest.mark.parametrize("state_of_net", [False, True], ids=["bare_network_keys", "net_keys"])
def test_saved_model_serves_the_training_function(tmp_path, state_of_net):
    b, path = _saved(tmp_path, state_of_net)
    x = _images()
    with torch.no_grad():
        expected = b.model(_reference(x).float())  # bare network on independently normalized input
    clf = Classifier.load(path)
    assert clf.backbone.model.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(clf.logits(x), expected, atol=1e-4)
    assert torch.allclose(predict_logits(b, x, torch.device("cpu")), expected, atol=1e-4)
    payload = torch.load(path, weights_only=True)
    assert not any(k.startswith("normalize") for k in payload["state_dict"])


def test_onnx_graph_takes_raw_pixels_and_normalizes_itself(tmp_path):
    pytest.importorskip("onnxruntime")
    from vistune.evaluate.variants import onnx_predictor
    from vistune.models.onnx_export import export_onnx

    b, _ = _saved(tmp_path)
    x = _images()
    with torch.no_grad():
        expected = b.model(_reference(x).float()).numpy()
    export_onnx(b, 16, tmp_path / "m.onnx")
    got = onnx_predictor(tmp_path / "m.onnx")(x.numpy())
    assert np.abs(got - expected).max() < 1e-4


def test_place_moves_normalization_with_the_network():
    b = create_backbone("timm:resnet10t", 3, "none")
    net = place(b, torch.device("cpu"), channels_last=False)
    assert not b.normalizer.channels_last
    assert b.model.conv1[0].weight.is_contiguous()  # NCHW when asked
    net = net.to(torch.float64)
    assert b.normalizer.scale.dtype == torch.float64  # one module: normalization buffers moved too
