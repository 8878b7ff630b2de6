"""The one MLflow adapter stages use: store location, run logging and model logging.

Paths in `register.tracking_uri` / `register.artifact_root` are relative to the repository
root; they are made absolute here so a stage run from DVC, Prefect or a test agrees on the store.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any, Iterable

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from mlflow.models import ModelSignature  # noqa: E402
from mlflow.types import ColSpec, Schema  # noqa: E402

from vistune.config import RegisterCfg  # noqa: E402

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# `mlflow.set_tracking_uri` writes MLFLOW_TRACKING_URI into os.environ, so reading it later would pin
# every store to the first one set in this process; only the user's own value overrides params.yaml.
_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def resolve_tracking_uri(cfg: RegisterCfg, root: Path) -> str:
    uri = _USER_TRACKING_URI or cfg.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        db = (root / uri[len(prefix):]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(db)
    return uri


def setup(cfg: RegisterCfg, root: Path) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    uri = resolve_tracking_uri(cfg, root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = Path(cfg.artifact_root)
    location = (root / artifacts).resolve().as_uri() if not artifacts.is_absolute() else artifacts.as_uri()
    try:
        return mlflow.create_experiment(cfg.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently by another run
        return mlflow.get_experiment_by_name(cfg.experiment).experiment_id


def lock_dir(cfg: RegisterCfg, root: Path) -> Path:
    """Where the registry lock file lives: beside a sqlite store, else under mlflow/."""
    uri = resolve_tracking_uri(cfg, root)
    return Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else root / "mlflow"


def open_registry(cfg: RegisterCfg, root: Path) -> tuple[mlflow.MlflowClient, Path]:
    """A client on the configured store plus the lock directory for alias changes."""
    uri = resolve_tracking_uri(cfg, root)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), lock_dir(cfg, root)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def git_dirty(root: Path) -> bool:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
        return bool(out.strip())
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False


def dvc_stage_hashes(root: Path) -> dict[str, str]:
    """md5 of every stage output recorded in dvc.lock: the data version a model came from."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    return {
        f"{stage}:{out['path']}": out.get("md5", "")
        for stage, body in stages.items() for out in body.get("outs", [])
    }


def orchestration_tags() -> dict[str, str]:
    """Tags naming the DVC experiment and Prefect flow run that produced this run (set by flows/)."""
    keys = {"VISTUNE_DVC_EXPERIMENT": "vistune.dvc_experiment", "VISTUNE_PREFECT_FLOW_RUN_ID": "vistune.prefect_flow_run_id",
            "VISTUNE_PREFECT_FLOW_RUN_NAME": "vistune.prefect_flow_run_name"}
    return {tag: os.environ[env] for env, tag in keys.items() if os.environ.get(env)}


def log_metrics_history(history: pd.DataFrame) -> None:
    for _, row in history.iterrows():
        step = int(row["epoch"])
        mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=step)


def log_artifacts(paths: Iterable[tuple[Path, str]]) -> None:
    for path, dest in paths:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=dest)
        elif path.is_file():
            mlflow.log_artifact(str(path), artifact_path=dest)


def signature(classes: list[str]) -> ModelSignature:
    inputs = Schema([
        ColSpec("string", "image_b64", required=False),
        ColSpec("binary", "image", required=False),
        ColSpec("string", "path", required=False),
    ])
    outputs = Schema([ColSpec("string", "label"), ColSpec("double", "confidence")]
                     + [ColSpec("double", f"p_{c}") for c in classes])
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    import PIL
    import timm
    import torch
    import torchvision

    return [
        f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}", f"timm=={timm.__version__}",
        f"pillow=={PIL.__version__}", f"pandas=={pd.__version__}", "numpy",
    ]


def log_model(model_file: Path, classes: list[str], example_image: bytes, registered_name: str | None,
              calibration: Path | None = None):
    """Log the pyfunc (code + weights + signature + input example); optionally register it.

    `calibration` (evaluate's calibration.json) travels with the weights so the served
    probabilities use the temperature fitted on val.
    """
    example = pd.DataFrame({"image_b64": [base64.b64encode(example_image).decode("ascii")]})
    artifacts = {"model": str(model_file)}
    if calibration is not None and Path(calibration).is_file():
        artifacts["calibration"] = str(calibration)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PACKAGE_ROOT / "integrations" / "pyfunc_entry.py"),
        artifacts=artifacts,
        code_paths=[str(PACKAGE_ROOT / "vistune"), str(PACKAGE_ROOT / "integrations")],
        signature=signature(classes),
        input_example=example,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_name,
    )
