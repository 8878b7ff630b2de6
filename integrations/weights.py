"""A registered version's weights, fetched without importing the logged code and verified before use.

The champion's side of the gate's re-scoring (`app.gate_report`) and of drift and scoring
(`integrations.champion`) both come here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from integrations import tags as T


def version_weights(client, name: str, version: str, dest: Path) -> Path:
    """Download only the `model` artifact (vistune-model/1 weights) of a registered pyfunc, verified
    against the version's `vistune.model_sha256` tag before anything unpickles it."""
    import mlflow

    from vistune.models.trust import verify_sha256

    base = client.get_model_version_download_uri(name, version).rstrip("/")
    mlmodel = yaml.safe_load(
        Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/MLmodel", dst_path=str(dest))).read_text()
    )
    try:
        rel = mlmodel["flavors"]["python_function"]["artifacts"]["model"]["path"]
    except (KeyError, TypeError):
        raise ValueError(f"v{version} is not a vistune pyfunc (no `model` artifact in its MLmodel)") from None
    weights = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{rel}", dst_path=str(dest)))
    expected = client.get_model_version(name, version).tags.get(T.MODEL_SHA256)
    if expected:
        verify_sha256(weights, expected, f"the vistune.model_sha256 tag of v{version}")
    return weights
