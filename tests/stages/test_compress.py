"""The compress stage on the tiny trained model: every variant built, measured and correct."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from stages import compress
from tests.conftest import tiny_params_dict
from vistune.models.classifier import Classifier
from vistune.config import parse_params
from vistune.data.prepared import load_prepared
from vistune.io import read_json
from vistune.models.inference import predict_logits


def _params(**compress_cfg):
    raw = tiny_params_dict()
    raw["compress"] = {**raw.get("compress", {}), **compress_cfg}
    return parse_params(raw)


def test_disabled_writes_empty_outputs(trained_tiny):
    compress.run(_params(enabled=False), trained_tiny)
    assert read_json(trained_tiny.compress_metrics) == {"compress_enabled": False}
    assert pd.read_csv(trained_tiny.compress_report).empty


def test_variants_are_built_checked_and_smaller(trained_tiny):
    p = _params(enabled=True, finetune_epochs=1, distill_epochs=1, prune_amount=0.6, latency_runs=3)
    table = compress.run(p, trained_tiny).set_index("variant")
    assert list(table.index) == ["fp32", "onnx", "onnx_int8", "pruned", "distilled"]
    # ONNX computes the same function as torch
    assert table.loc["onnx", "max_abs_diff"] < 1e-3
    n_test = len(load_prepared(trained_tiny.prepared, splits=("test",)).splits["test"])
    assert abs(table.loc["onnx", "accuracy"] - table.loc["fp32", "accuracy"]) <= 1 / n_test  # at most a near-tie flips
    # pruning really zeroed weights, and the saved file loads as a vistune model
    assert table.loc["pruned", "sparsity"] >= 0.59
    pruned = Classifier.load(trained_tiny.compress_models / "pruned.pt")
    w = torch.cat([m.weight.flatten() for m in pruned.backbone.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    assert float((w == 0).float().mean()) >= 0.59
    assert table.loc["pruned", "gzip_mb"] < table.loc["fp32", "gzip_mb"]
    # the student is a smaller network that still predicts the label set
    assert table.loc["distilled", "size_mb"] < table.loc["fp32", "size_mb"]
    student = Classifier.load(trained_tiny.compress_models / "distilled.pt")
    x, _ = load_prepared(trained_tiny.prepared, splits=("test",)).tensors("test")
    assert predict_logits(student.backbone, x, torch.device("cpu")).shape == (len(x), len(student.classes))
    metrics = read_json(trained_tiny.compress_metrics)
    assert metrics["compress_enabled"] is True and 0.0 <= metrics["onnx_int8_accuracy"] <= 1.0
    assert np.isfinite(table[["p50_ms", "p95_ms"]].to_numpy()).all()


def test_unknown_variant_is_a_clear_error(trained_tiny):
    import pytest

    from vistune.errors import ConfigError

    with pytest.raises(ConfigError, match="compress.variants"):
        compress.run(dataclasses.replace(_params(), compress=dataclasses.replace(_params().compress, variants=("zip",))),
                     trained_tiny)
