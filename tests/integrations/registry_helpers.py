"""Register the session's real tiny model into a temp MLflow store, with chosen test metrics."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml

from vistune.config import Params, RegisterCfg, parse_params, to_dict
from vistune.layout import Layout

from tests.conftest import tiny_params_dict


# For tests of the metric margin, thresholds and aliases: they fake test metrics on copies of one
# real model, which a significance test (it re-scores both) rightly finds identical. The default
# McNemar gate is tested on real re-scored pairs in test_gate_stats.py.
METRIC_GATE_ONLY = {"gate_test": "none"}


def copy_layout(src: Layout, dest: Path, **metric_overrides: float) -> Layout:
    """A private copy of a trained layout whose metrics.json carries `metric_overrides`."""
    shutil.copytree(src.root, dest, ignore=shutil.ignore_patterns("checkpoints", "registry"), dirs_exist_ok=True)
    lay = Layout(dest)
    metrics = json.loads(lay.eval_metrics.read_text())
    metrics.update({f"test_{k}": float(v) for k, v in metric_overrides.items()})
    lay.eval_metrics.write_text(json.dumps(metrics))
    return lay


def params_with(cfg: RegisterCfg, **register_overrides) -> Params:
    return dataclasses.replace(
        parse_params(tiny_params_dict()), register=dataclasses.replace(cfg, **register_overrides)
    )


def register(
    trained: Layout, dest: Path, cfg: RegisterCfg, register_overrides: dict | None = None, **metric_overrides: float
) -> dict:
    """Run the real `register` stage on a copy of `trained`; returns its receipt."""
    from stages import register as register_stage

    lay = copy_layout(trained, dest, **metric_overrides)
    return register_stage.run(params_with(cfg, **(register_overrides or {})), lay)


def write_params_file(path: Path, cfg: RegisterCfg) -> Path:
    """A params.yaml whose register section points at `cfg`'s store (for CLI, flows, serve)."""
    raw = tiny_params_dict()
    raw["register"] = to_dict(cfg)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _head_keys(state: dict, n_classes: int) -> tuple[str, str]:
    """The state-dict keys of the classifier head's weight and bias (the last n_classes-row tensors)."""
    return (
        [k for k, v in state.items() if v.ndim == 2 and v.shape[0] == n_classes][-1],
        [k for k, v in state.items() if v.ndim == 1 and v.shape[0] == n_classes][-1],
    )


def constant_model(src: Path, dest: Path, cls: int) -> None:
    """A real vistune model file whose head always answers class `cls` (a clearly different model)."""
    payload = torch.load(src, map_location="cpu", weights_only=True)
    state = payload["state_dict"]
    w, b = _head_keys(state, len(payload["classes"]))
    state[w] = torch.zeros_like(state[w])
    state[b] = torch.full_like(state[b], -10.0)
    state[b][cls] = 10.0
    torch.save(payload, dest)


def worse_challenger(trained: Layout, dest: Path, **metric_overrides: float) -> tuple[Layout, int]:
    """A copy of `trained` whose model always answers one class (not the real model's most frequent
    answer): the gate's re-scoring must find it worse whatever metrics.json claims. Returns (layout, class)."""
    from vistune.evaluate import rescore

    data = rescore.load_eval_set(trained)
    cls = (int(np.bincount(rescore.predict(trained.model, data)).argmax()) + 1) % len(data.classes)
    lay = copy_layout(trained, dest, **metric_overrides)
    constant_model(trained.model, lay.model, cls)
    return lay, cls


def linear_probe_model(trained: Layout, dest: Path) -> None:
    """`trained`'s model with its head refit on the train split: scikit-learn's logistic regression on
    the network's own pooled features (a closed-form linear probe). Other weights, and a truly better
    model on the tiny set, where one epoch of SGD stays at chance (measured: 14/20 test images right
    vs 2/20; 2 CPU cores, 2026-12-05)."""
    from sklearn.linear_model import LogisticRegression

    from vistune.data.prepared import load_prepared
    from vistune.models.classifier import Classifier

    clf = Classifier.load(trained.model)
    clf.backbone.model.reset_classifier(0)  # timm: the network now answers its pooled features
    train = load_prepared(trained.prepared, splits=("train",)).splits["train"]
    features = clf.logits(torch.from_numpy(np.ascontiguousarray(train.images))).numpy()
    probe = LogisticRegression(max_iter=2000).fit(features, train.labels)
    payload = torch.load(trained.model, map_location="cpu", weights_only=True)
    w, b = _head_keys(payload["state_dict"], len(payload["classes"]))
    assert list(probe.classes_) == list(range(len(payload["classes"])))  # rows in the model's class order
    payload["state_dict"][w] = torch.from_numpy(probe.coef_).to(payload["state_dict"][w].dtype)
    payload["state_dict"][b] = torch.from_numpy(probe.intercept_).to(payload["state_dict"][b].dtype)
    torch.save(payload, dest)
