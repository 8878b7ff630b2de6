"""Register the session's real tiny model into a temp MLflow store, with chosen test metrics."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

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
    return dataclasses.replace(parse_params(tiny_params_dict()), register=dataclasses.replace(cfg, **register_overrides))


def register(trained: Layout, dest: Path, cfg: RegisterCfg, register_overrides: dict | None = None,
             **metric_overrides: float) -> dict:
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
