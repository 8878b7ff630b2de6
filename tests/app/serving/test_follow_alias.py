"""`vistune serve` follows `champion` for real: a real sqlite registry with two versions of different
weights, the real HTTP server, promote and rollback through `integrations.registry`; no restart."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from integrations import registry, tracking
from tests.conftest import stop_process_group
from tests.integrations.registry_helpers import (
    params_with,
    register,
    worse_challenger,
    write_params_file,
)
from tests.app.test_serve import _post, _split, _wait_ping, start_serve


def _versions_answering(url: str, body: bytes) -> tuple[str, str]:
    """(model_version, label) of one prediction; any failed request fails the test."""
    code, text = _post(url, body)
    assert code == 200, f"HTTP {code}: {text[:300]}"
    row = json.loads(text)["predictions"][0]
    return row["model_version"], row["label"]


def _wait_for_version(url: str, body: bytes, version: str, limit_s: float = 90) -> tuple[float, str]:
    """Seconds until the server answers with `version` (every answer on the way must be a 200), and its label."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        got, label = _versions_answering(url, body)
        if got == version:
            return time.monotonic() - t0, label
        time.sleep(0.5)
    raise AssertionError(f"still answering v{got} {limit_s} s after the alias moved to v{version}")


def _broken_version(client, name: str, dest: Path) -> str:
    """A new version whose weights file is garbage (the copy of v1's model with its bytes replaced)."""
    import mlflow

    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(dest)))
    weights = [p for p in model_dir.rglob("*") if p.is_file() and p.suffix in (".pt", ".pth", ".onnx")]
    assert weights, f"no weights file under {sorted(p.name for p in model_dir.rglob('*'))}"
    for w in weights:
        w.write_bytes(b"not a checkpoint" * 64)
    return str(client.create_model_version(name, str(model_dir)).version)


def _version_info(url: str) -> dict:
    with urllib.request.urlopen(url + "/version", timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_serving_follows_promote_and_rollback_and_survives_a_broken_version(trained_tiny, mlflow_cfg, tmp_path):
    first = register(trained_tiny, tmp_path / "a", mlflow_cfg)
    worse, cls = worse_challenger(trained_tiny, tmp_path / "b", macro_f1=0.99)  # always answers class `cls`
    from stages import register as register_stage

    second = register_stage.run(params_with(mlflow_cfg), worse)
    assert (first["version"], first["promoted"], second["version"], second["promoted"]) == ("1", True, "2", False)
    classes = json.loads((trained_tiny.prepared / "meta.json").read_text())["classes"]
    params = write_params_file(tmp_path / "params.yaml", mlflow_cfg)
    manifest = pd.read_csv(trained_tiny.manifest, dtype={"label": str})
    png = (trained_tiny.raw / manifest[manifest.split == "test"].iloc[0].path).read_bytes()
    body = _split("image_b64", base64.b64encode(png).decode())

    proc, url = start_serve(params, tmp_path, "--poll-s", "1")
    client, lock = tracking.open_registry(mlflow_cfg, tmp_path.resolve())
    name = mlflow_cfg.model_name
    try:
        _wait_ping(url, proc)
        assert _versions_answering(url, body)[0] == "1"
        assert _version_info(url)["version"] == "1"

        registry.promote(client, name, "2", lock, reason="test: promote v2", force=True)  # the gate kept v2
        _, label = _wait_for_version(url, body, "2")
        assert label == classes[cls]  # v2's own weights answer, not v1's under a new name

        registry.rollback(client, name, lock)
        _wait_for_version(url, body, "1")

        broken = _broken_version(client, name, tmp_path / "broken")
        registry.promote(client, name, broken, lock, reason="test: a version whose weights are garbage")
        deadline = time.monotonic() + 90
        while f"v{broken} failed to load" not in (_version_info(url)["last_error"] or ""):
            assert time.monotonic() < deadline, f"no load failure reported: {_version_info(url)}"
            assert _versions_answering(url, body)[0] == "1"  # the old version keeps answering meanwhile
            time.sleep(1)
        assert _versions_answering(url, body)[0] == "1" and _version_info(url)["version"] == "1"
        assert proc.poll() is None
    finally:
        stop_process_group(proc)
    log = proc.stdout.read()
    assert f"v{broken} failed to load" in log and "still serving v1" in log
    assert "now serving v2 (was v1" in log and "now serving v1 (was v2" in log
