"""A registered model and what it was trained on, fetched from the registry for drift checks and
batch scoring (`validate`, `vistune score`).

What comes back for a version: its weights (the pyfunc's `model` artifact, verified against the
version's `vistune.model_sha256` tag), its fitted temperature (`calibration`), the training manifest
its run logged (`validate/manifest.csv`, train split) and the embeddings of a sample of its training
images (`evaluate/drift_reference.npy`, written by `evaluate`; absent for versions registered before
it existed: the feature test is then skipped, the manifest tests still run).
A store that does not exist yet, a model never registered or an alias not set is "no reference"
(None), never an error: the first run of a pipeline has no champion.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from integrations import tracking
from integrations.weights import version_weights
from vistune.config import RegisterCfg
from vistune.evaluate import drift

MANIFEST_ARTIFACT = "validate/manifest.csv"
REFERENCE_ARTIFACT = "evaluate/drift_reference.npy"


@dataclass
class RegisteredModel:
    name: str
    version: str
    label: str  # "vistune-classifier v3 (champion)"
    weights: Path
    temperature: float
    manifest: pd.DataFrame | None  # its training rows (train split), None when the run did not log them
    features: np.ndarray | None  # reference embeddings, None for older versions


def _store_missing(cfg: RegisterCfg, root: Path) -> bool:
    """A sqlite store whose file does not exist yet: nothing registered. Checked without
    `resolve_tracking_uri`, which creates the store's folder."""
    uri = tracking._USER_TRACKING_URI or cfg.tracking_uri
    if not uri.startswith("sqlite:///"):
        return False
    path = Path(uri.removeprefix("sqlite:///"))
    return not (path if path.is_absolute() else tracking.store_root(root) / path).is_file()


def open_version(cfg: RegisterCfg, root: Path, alias: str | None = "champion", version: str | None = None):
    """(client, model version) for `version` or `alias`, or None when there is none (yet)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if _store_missing(cfg, root):
        return None
    uri = tracking.resolve_tracking_uri(cfg, root)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        mv = (
            client.get_model_version(cfg.model_name, str(version))
            if version is not None
            else client.get_model_version_by_alias(cfg.model_name, alias)
        )
    except MlflowException as exc:
        if tracking.is_unreachable(exc):
            raise  # retried by the caller, then one clear line
        if version is not None:
            raise ValueError(f"{cfg.model_name} has no version {version}; `vistune status` lists them") from None
        return None  # no such model or alias yet
    return client, mv


def _run_artifact(client, run_id: str | None, path: str, dest: Path) -> Path | None:
    if not run_id:
        return None
    try:
        return Path(client.download_artifacts(run_id, path, str(dest)))
    except Exception:  # noqa: BLE001 - not logged by this run (older version): the caller skips that test
        return None


def fetch(
    cfg: RegisterCfg, root: Path, dest: Path, alias: str | None = "champion", version: str | None = None
) -> RegisteredModel | None:
    """Weights, temperature, training manifest and reference embeddings of a version, into `dest`."""
    if _store_missing(cfg, root):
        return None
    found = tracking.with_retries(
        cfg,
        tracking.resolve_tracking_uri(cfg, root),
        "find model version",
        lambda: open_version(cfg, root, alias, version),
    )
    if found is None:
        return None
    client, mv = found
    v = str(mv.version)
    weights = version_weights(client, cfg.model_name, v, dest / "model")
    temperature = _calibration(client, cfg.model_name, v, dest / "model")
    manifest_file = _run_artifact(client, mv.run_id, MANIFEST_ARTIFACT, dest / "run")
    manifest = None
    if manifest_file is not None:
        manifest = pd.read_csv(manifest_file, dtype={"label": str})
        manifest = manifest[manifest.split == "train"] if "split" in manifest else manifest
    reference = _run_artifact(client, mv.run_id, REFERENCE_ARTIFACT, dest / "run")
    label = f"{cfg.model_name} v{v}" + (f" ({alias})" if version is None and alias else "")
    return RegisteredModel(
        cfg.model_name,
        v,
        label,
        weights,
        temperature,
        manifest,
        drift.load_reference(reference) if reference is not None else None,
    )


def champion_manifest(cfg: RegisterCfg, root: Path, dest: Path) -> tuple[str, pd.DataFrame | None] | None:
    """(version, every manifest row its run logged, all splits) of the champion; None without one.
    The `watch` flow compares a source with it (the rows' sha256 are the bytes it trained on)."""
    if _store_missing(cfg, root):
        return None
    found = open_version(cfg, root)
    if found is None:
        return None
    client, mv = found
    path = _run_artifact(client, mv.run_id, MANIFEST_ARTIFACT, dest)
    return str(mv.version), (pd.read_csv(path, dtype={"label": str}) if path is not None else None)


def _calibration(client, name: str, version: str, dest: Path) -> float:
    """The version's served temperature (its `calibration` artifact), 1.0 when it has none."""
    import mlflow

    base = client.get_model_version_download_uri(name, version).rstrip("/")
    mlmodel = yaml.safe_load(
        Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/MLmodel", dst_path=str(dest))).read_text()
    )
    rel = (
        (mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts") or {})
        .get("calibration", {})
        .get("path")
    )
    if not rel:
        return 1.0
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{rel}", dst_path=str(dest)))
    return float(json.loads(path.read_text()).get("temperature") or 1.0)


def fetch_temp(cfg: RegisterCfg, root: Path, alias: str | None = "champion", version: str | None = None):
    """`fetch` into a temporary folder that lives as long as the returned context (weights included)."""
    tmp = tempfile.TemporaryDirectory(prefix="vistune-model-")
    return tmp, fetch(cfg, root, Path(tmp.name), alias, version)


def drift_against(
    model: RegisteredModel, new: pd.DataFrame, image_root: Path, cfg, device: str = "cpu", clf=None
) -> drift.DriftResult:
    """Compare new images (manifest rows, files under `image_root`) with what `model` was trained on.

    `cfg` is the ValidateCfg (threshold, sample size); `clf` an already loaded Classifier of `model`
    (score reuses its own), else one is loaded on `device`. Labels take part only when every new row
    has one."""
    from vistune.models.classifier import Classifier

    if model.manifest is None or model.manifest.empty:
        return drift.skipped(
            f"{model.label}: its run logged no training manifest ({MANIFEST_ARTIFACT})", cfg.drift_threshold
        )
    new_features = None
    if model.features is not None and len(new) > 1:
        clf = clf or Classifier.load(model.weights, device=device)
        idx = drift.sample_index(len(new), cfg.drift_sample, seed=0)
        blobs = [(image_root / p).read_bytes() for p in new.path.iloc[idx]]
        new_features = drift.embed(clf.backbone, clf.prepare(blobs), clf.device)
    labelled = "label" in new and new.label.notna().all() and new.label.astype(str).ne("").all()
    result = drift.compare(
        model.manifest,
        new,
        cfg.drift_threshold,
        reference_name=model.label,
        reference_features=model.features,
        new_features=new_features,
        labelled=bool(labelled),
    )
    if model.features is None:
        result.reason += f"; feature test skipped ({model.label} has no {REFERENCE_ARTIFACT})"
    return result


def drift_vs_champion(
    register_cfg: RegisterCfg,
    validate_cfg,
    root: Path,
    new: pd.DataFrame | Callable[[], pd.DataFrame],
    image_root: Path,
    device: str = "cpu",
) -> drift.DriftResult:
    """Drift of `new` against the current champion; skipped (with the reason) when there is none yet
    or the registry cannot be reached (validation keeps working offline). `new` may be a function
    that reads the rows: then they are loaded only when there is a champion to compare with."""
    from mlflow.exceptions import MlflowException

    from vistune.errors import VistuneError

    try:
        tmp, model = fetch_temp(register_cfg, root)
    except VistuneError as exc:
        return drift.skipped(f"registry unreachable ({exc})", validate_cfg.drift_threshold)
    except MlflowException as exc:  # e.g. the champion's run was deleted from the store: advisory check, skip it
        return drift.skipped(
            f"champion's artifacts unavailable ({str(exc).splitlines()[0]})", validate_cfg.drift_threshold
        )
    with tmp:
        if model is None:
            return drift.skipped(
                f"no champion of {register_cfg.model_name} in the registry yet", validate_cfg.drift_threshold
            )
        return drift_against(model, new() if callable(new) else new, image_root, validate_cfg, device=device)


def drift_measured_against(report: dict | None) -> str | None:
    """The champion version a drift report (validate's drift.json) was measured against, None when
    it was skipped (no champion yet, registry unreachable) or there is no report."""
    found = re.search(r" v(\d+)\b", str((report or {}).get("reference") or ""))
    return found.group(1) if found and (report or {}).get("status") == "compared" else None


def drift_check(report: dict | None, gate_champion: str | None) -> dict:
    """register's drift metrics for DVC: the champion drift was measured against, the one the gate
    compared with (null: none) and whether the drift figures are stale (`drift_staleness`)."""
    measured = drift_measured_against(report)
    return {
        "drift_reference_version": int(measured) if measured else None,
        "drift_gate_champion": int(gate_champion) if gate_champion else None,
        "drift_stale": drift_staleness(report, gate_champion) is not None,
    }


def drift_staleness(report: dict | None, gate_champion: str | None) -> str | None:
    """Why a drift report (validate's drift.json scalars) does not describe the champion the gate used,
    or None when it does. DVC caches `validate` and cannot see the registry: a report written before
    that champion existed says "no champion yet" next to a gate that compared with one."""
    if not report or not gate_champion:
        return None
    measured = drift_measured_against(report)
    if measured == str(gate_champion):
        return None
    was = f"measured against v{measured}" if measured else f"not measured ({report.get('reason') or 'skipped'})"
    return (
        f"stale: drift was {was} when validate ran; the gate compared with champion v{gate_champion}; "
        f"`dvc repro --force validate` measures it against v{gate_champion}"
    )
