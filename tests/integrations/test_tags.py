"""One tag schema, MLflow only behind the adapter, dvc.yaml/dvc.lock read by one helper."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
import yaml

from integrations import dvcfiles, tags as T
from tests.conftest import REPO

LAYERS = ("stages", "flows", "integrations")


def _modules(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).glob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_stages_and_flows_never_import_mlflow():
    offenders = {
        p.relative_to(REPO).as_posix(): sorted(m for m in _imports(p) if m.split(".")[0] == "mlflow")
        for p in _modules("stages", "flows")
    }
    assert {k: v for k, v in offenders.items() if v} == {}  # MLflow lives behind integrations/tracking.py


def _string_parts(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def test_tag_keys_are_spelled_only_in_the_schema():
    schemas = ("tags.py", "events.py")  # MLflow tag keys; Prefect event names and labels (flows/events.py)
    spelled = {
        p.relative_to(REPO).as_posix(): [s for s in _string_parts(p) if s.startswith("vistune.")]
        for p in _modules(*LAYERS)
        if p.name not in schemas
    }
    assert {k: v for k, v in spelled.items() if v} == {}
    assert T.lineage("git_commit") == "vistune.lineage.git_commit"
    assert T.dvc_out("train", "data/model/model.pt") == "vistune.dvc.train:data/model/model.pt"
    with pytest.raises(KeyError, match="valid"):
        T.lineage("gitcommit")


def test_running_stage_outputs_are_hashed_as_written(tmp_path: Path):
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "train": {"cmd": "x", "outs": ["model.pt"]},
                    "register": {"cmd": "y", "outs": [{"reg.json": {"cache": False}}], "metrics": ["gate.md"]},
                }
            }
        )
    )
    (tmp_path / "dvc.lock").write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "train": {"outs": [{"path": "model.pt", "md5": "a" * 32}]},
                    "register": {"outs": [{"path": "reg.json", "md5": "b" * 32}, {"path": "gate.md", "md5": "c" * 32}]},
                },
            }
        )
    )
    (tmp_path / "reg.json").write_text('{"version": "2"}\n')  # this run's receipt; gate.md not written (yet)
    assert dvcfiles.out_hashes(tmp_path) == {
        ("train", "model.pt"): "a" * 32,
        ("register", "reg.json"): "b" * 32,
        ("register", "gate.md"): "c" * 32,
    }
    assert dvcfiles.out_hashes(tmp_path, written_by="register") == {
        ("train", "model.pt"): "a" * 32,
        ("register", "reg.json"): hashlib.md5(b'{"version": "2"}\n').hexdigest(),
    }
    assert dvcfiles.uncached_outputs(tmp_path) == ["reg.json"]
    assert dvcfiles.declared_outs(tmp_path, "register") == ["reg.json", "gate.md"]
    assert dvcfiles.lock_entry(tmp_path, "nope") is None and dvcfiles.out_hashes(tmp_path / "empty") == {}
