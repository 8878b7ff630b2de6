"""The one MLflow adapter stages use: store location, run logging and model logging.

`Tracker.open(cfg, root)` resolves the store once per run and holds the client, the experiment and
the registry lock; `stages/register.py` goes through it and never imports mlflow itself.

Paths in `register.tracking_uri` / `register.artifact_root` are relative to the repository
root; they are made absolute here so a stage run from DVC, Prefect or a test agrees on the store.
A flow run in an isolated worktree (flows/isolation.py) sets VISTUNE_STORE_ROOT to the main
repository, so its registrations go to the same store, under the same registry lock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
from filelock import FileLock  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.models import ModelSignature  # noqa: E402
from mlflow.types import ColSpec, Schema  # noqa: E402

from integrations import registry, retry, tags as T  # noqa: E402
from vistune.config import RegisterCfg  # noqa: E402
from vistune.errors import VistuneError  # noqa: E402
from vistune.io import sha256_file  # noqa: E402

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# `mlflow.set_tracking_uri` writes MLFLOW_TRACKING_URI into os.environ, so reading it later would pin
# every store to the first one set in this process; only the user's own value overrides params.yaml.
_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def store_root(root: Path) -> Path:
    """The root relative store paths and the registry lock resolve against: VISTUNE_STORE_ROOT
    (set by the flow for a run in a worktree of that repository), else the stage's own root."""
    return Path(os.environ.get("VISTUNE_STORE_ROOT") or root)


def resolve_tracking_uri(cfg: RegisterCfg, root: Path) -> str:
    uri = _USER_TRACKING_URI or cfg.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        db = (store_root(root) / uri[len(prefix) :]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(db)
    return uri


def is_server(uri: str) -> bool:
    """A tracking server (REST) rather than a store this process opens itself."""
    return uri.startswith(("http://", "https://"))


def is_unreachable(exc: BaseException) -> bool:
    """Transient: the server is down, restarting or overloaded (worth a retry), not a user mistake."""
    if isinstance(exc, (ConnectionError, TimeoutError, urllib.error.URLError)):
        return True
    text = str(exc)
    return any(
        s in text
        for s in (
            "Max retries exceeded",
            "Connection refused",
            "Failed to establish",
            "Read timed out",
            "TEMPORARILY_UNAVAILABLE",
            "503 Server Error",
            "502 Server Error",
            "504 Server Error",
        )
    )


def _ping(uri: str) -> None:
    """One GET of the server's /health; any HTTP answer below 500 means someone is listening."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
            return
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise ConnectionError(f"HTTP {exc.code} from {uri}") from None


def unreachable_error(uri: str, cfg: RegisterCfg, exc: BaseException) -> VistuneError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return VistuneError(
        f"MLflow tracking server {uri} unreachable after {cfg.retries} retries ({first}): "
        f"is the MLflow server running? `make up` (or fix register.tracking_uri / MLFLOW_TRACKING_URI)"
    )


def with_retries(cfg: RegisterCfg, uri: str, what: str, fn):
    """`fn()` with `register.retries` retries and backoff when the store is a server; a server that
    stays away becomes one clear VistuneError."""
    if not is_server(uri):
        return fn()
    try:
        return retry.call(
            fn, retries=cfg.retries, backoff_s=cfg.retry_backoff_s, what=f"{what} at {uri}", retry_if=is_unreachable
        )
    except Exception as exc:
        if is_unreachable(exc):
            raise unreachable_error(uri, cfg, exc) from None
        raise


def setup(cfg: RegisterCfg, root: Path, uri: str | None = None) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id.

    A tracking server is pinged first (with retries) so a server that is down fails in seconds with
    one line instead of MLflow's long per-request retries; the server's own artifact destination
    decides where artifacts go (no local file location is forced on it).

    A store opened directly (sqlite) is created, schema migrations included, by the first process
    that opens it; two parallel registrations doing that at once break MLflow's migration
    ("Online migration expected to match one row"), so opening it is done one at a time."""
    uri = uri or resolve_tracking_uri(cfg, root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if is_server(uri):
        with_retries(cfg, uri, "ping", lambda: _ping(uri))
        return _ensure_experiment(cfg, root, uri)
    lock = lock_dir(cfg, root)
    lock.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock / ".store-open.lock"), timeout=300):
        return _ensure_experiment(cfg, root, uri)


def _ensure_experiment(cfg: RegisterCfg, root: Path, uri: str) -> str:
    exp = with_retries(cfg, uri, "get experiment", lambda: mlflow.get_experiment_by_name(cfg.experiment))
    if exp is not None:
        return exp.experiment_id
    location = None
    if not is_server(uri):
        artifacts = Path(cfg.artifact_root)
        location = (artifacts if artifacts.is_absolute() else (store_root(root) / artifacts).resolve()).as_uri()
    try:
        return mlflow.create_experiment(cfg.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently by another run
        return with_retries(
            cfg, uri, "get experiment", lambda: mlflow.get_experiment_by_name(cfg.experiment)
        ).experiment_id


# register keys that only say where the store is or how hard to retry: they do not make a new registration
_TRANSPORT_KEYS = {"tracking_uri", "artifact_root", "retries", "retry_backoff_s", "approval_timeout_h"}


def idempotency_tags(model_file: Path, params: dict[str, Any], metrics: dict[str, Any]) -> dict[str, str]:
    """What makes two registrations "the same": the weights, the params (gate settings included, so a
    changed margin is gated anew) and the evaluation metrics. A re-run after the tracking server came
    back matches on all three and reuses the version instead of registering a duplicate."""
    shaping = {**params, "register": {k: v for k, v in params.get("register", {}).items() if k not in _TRANSPORT_KEYS}}
    digest = hashlib.sha256(json.dumps(flatten(shaping), sort_keys=True, default=str).encode()).hexdigest()
    metrics_digest = hashlib.sha256(json.dumps(metrics, sort_keys=True, default=str).encode()).hexdigest()
    return {T.MODEL_SHA256: sha256_file(model_file), T.PARAMS_SHA256: digest, T.METRICS_SHA256: metrics_digest}


VERSION_IDENTITY = (T.MODEL_SHA256,)  # the identity tag a version carries; the params/metrics digests are its run's


def version_with_tags(client: mlflow.MlflowClient, name: str, tags: dict[str, str]):
    """The registered version of `name` carrying all of `tags` on itself or its run (the lowest if
    several), else None."""
    try:
        found = client.search_model_versions(f"name='{name}'")
    except mlflow.exceptions.MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc):
            return None
        raise

    def carries(mv) -> bool:
        if any(mv.tags.get(k) != v for k, v in tags.items() if k in VERSION_IDENTITY):
            return False
        rest = {k: v for k, v in tags.items() if mv.tags.get(k) != v}
        run_tags = client.get_run(mv.run_id).data.tags if rest and mv.run_id else {}
        return all(run_tags.get(k) == v for k, v in rest.items())

    hits = [mv for mv in found if carries(mv)]
    return min(hits, key=lambda mv: int(mv.version)) if hits else None


def version_metrics(uri: str, name: str, version: str) -> dict[str, float]:
    """The metrics of the run that registered `version` of `name` (the run report's champion column)."""
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version(name, version)
    return dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}


def lock_dir(cfg: RegisterCfg, root: Path, uri: str | None = None) -> Path:
    """Where the registry lock file lives: beside a sqlite store, else under mlflow/."""
    uri = uri or resolve_tracking_uri(cfg, root)
    return Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else store_root(root) / "mlflow"


def open_registry(
    cfg: RegisterCfg, root: Path, shared: registry.SharedLock | None = None
) -> tuple[mlflow.MlflowClient, registry.RegistryLock]:
    """A client on the configured store plus the lock for alias changes (`shared`: the lock all hosts
    see, handed in by the caller, e.g. `flows.cross_host_lock.hold`)."""
    uri = resolve_tracking_uri(cfg, root)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), registry.RegistryLock(
        lock_dir(cfg, root, uri), shared
    )


def open_receipt_registry(
    receipt: dict, root: Path, shared: registry.SharedLock | None = None
) -> tuple[mlflow.MlflowClient, registry.RegistryLock]:
    """A client on the store a `register` receipt names (its resolved URI), and its registry lock:
    the flow acts on the version after the stage's process is gone, params possibly restored."""
    uri = receipt["tracking_uri"]
    lock = registry.RegistryLock(lock_dir(None, root, uri), shared)  # type: ignore[arg-type]
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), lock


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


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
    inputs = Schema(
        [
            ColSpec("string", "image_b64", required=False),
            ColSpec("binary", "image", required=False),
            ColSpec("string", "path", required=False),
        ]
    )
    outputs = Schema(
        [ColSpec("string", "label"), ColSpec("double", "confidence")]
        + [ColSpec("double", f"p_{c}") for c in classes]
        + [ColSpec("double", "energy"), ColSpec("boolean", "out_of_distribution", required=False)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    import PIL
    import timm
    import torch
    import torchvision

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
        f"timm=={timm.__version__}",
        f"pillow=={PIL.__version__}",
        f"pandas=={pd.__version__}",
        "numpy",
    ]


def log_model(
    model_file: Path,
    classes: list[str],
    example_image: bytes,
    registered_name: str | None,
    calibration: Path | None = None,
    version_tags: dict[str, str] | None = None,
    name: str = "model",
    max_pixels: int | None = None,
):
    """Log the pyfunc (code + weights + signature + input example); optionally register it.

    The version is created with `version_tags` in the same call, so a crash can never leave a version
    without its idempotency tags (which would let a re-run register the same model twice).

    `calibration` (evaluate's calibration.json) travels with the weights so the served
    probabilities use the temperature fitted on val. The weights' sha256 goes into the model's
    `model_config`, so whoever loads the model later verifies the file it downloaded; `max_pixels`
    (validate.max_pixels) goes there too: the served model refuses larger images from their header.
    """
    example = pd.DataFrame({"image_b64": [base64.b64encode(example_image).decode("ascii")]})
    artifacts = {"model": str(model_file)}
    if calibration is not None and Path(calibration).is_file():
        artifacts["calibration"] = str(calibration)
    requirements = pip_requirements()
    if Path(model_file).suffix == ".onnx":  # a compress variant runs on ONNX Runtime
        import onnxruntime

        requirements.append(f"onnxruntime=={onnxruntime.__version__}")
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PACKAGE_ROOT / "integrations" / "pyfunc_entry.py"),
        artifacts=artifacts,
        code_paths=[str(PACKAGE_ROOT / "vistune"), str(PACKAGE_ROOT / "integrations")],
        signature=signature(classes),
        input_example=example,
        pip_requirements=requirements,
        # the digest is checked by load_context before torch.load
        model_config={
            "model_sha256": sha256_file(model_file),
            **({"max_pixels": int(max_pixels)} if max_pixels else {}),
        },
    )
    if registered_name:
        info.registered_model_version = mlflow.register_model(
            info.model_uri, registered_name, tags=version_tags
        ).version
    return info


_R = TypeVar("_R")


@dataclass(frozen=True)
class RunRecord:
    """Everything one pipeline run logs to MLflow, as typed values (the stage reads the files)."""

    name: str | None  # the run's name: the DVC experiment / Prefect flow run (lineage.run_name)
    params: dict[str, Any]  # resolved params.yaml, nested
    metrics: dict[str, float]
    history: pd.DataFrame  # per-epoch rows with an `epoch` column
    manifest: pd.DataFrame  # the training data, logged as an MLflow dataset input
    manifest_uri: str
    artifacts: list[tuple[Path, str]]  # (file or folder, artifact path); missing ones are skipped
    model_file: Path
    classes: list[str]
    example_image: bytes
    calibration: Path | None = None
    version_tags: dict[str, str] = field(default_factory=dict)  # set as the version is created
    run_tags: dict[str, str] = field(default_factory=dict)  # set before the model is logged


@dataclass
class Tracker:
    """The MLflow side of one registration, opened once per run: store, experiment, client, lock."""

    cfg: RegisterCfg
    uri: str
    experiment_id: str
    lock: registry.RegistryLock
    client: mlflow.MlflowClient

    @classmethod
    def open(cls, cfg: RegisterCfg, root: Path, shared: registry.SharedLock | None = None) -> Tracker:
        uri = resolve_tracking_uri(cfg, root)
        experiment_id = setup(cfg, root, uri)
        return cls(
            cfg,
            uri,
            experiment_id,
            registry.RegistryLock(lock_dir(cfg, root, uri), shared),
            mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri),
        )

    @property
    def model_name(self) -> str:
        return self.cfg.model_name

    def retrying(self, what: str, fn: Callable[[], _R]) -> _R:
        return with_retries(self.cfg, self.uri, what, fn)

    def version_with_tags(self, tags: dict[str, str]):
        """The version registered earlier with all of `tags`, else None."""
        return self.retrying("search model versions", lambda: version_with_tags(self.client, self.model_name, tags))

    def log_run(self, rec: RunRecord) -> tuple[str, str]:
        """One MLflow run (params, metrics, dataset, artifacts, the pyfunc model) and the registered
        version created from it; returns (run_id, version)."""
        import warnings

        with mlflow.start_run(experiment_id=self.experiment_id, run_name=rec.name) as active:
            mlflow.log_params(flatten(rec.params))
            mlflow.set_tags(rec.run_tags)  # before the version exists: a re-run always finds them
            mlflow.log_dict(rec.params, "lineage/params.yaml")  # the resolved params, for `vistune lineage`
            with warnings.catch_warnings():  # schema-inference hints about integer columns are noise here
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(rec.manifest, source=rec.manifest_uri, name="image_manifest")
                # two runs logging the same dataset at once hit a UNIQUE constraint in MLflow's sqlite store
                with registry.registry_lock(self.lock):
                    mlflow.log_input(dataset, context="training")
            log_metrics_history(rec.history)
            mlflow.log_metrics(rec.metrics)
            log_artifacts(rec.artifacts)
            info = log_model(
                rec.model_file,
                rec.classes,
                rec.example_image,
                registered_name=self.model_name,
                calibration=rec.calibration,
                version_tags=rec.version_tags,
                max_pixels=(rec.params.get("validate") or {}).get("max_pixels"),
            )
            return active.info.run_id, str(info.registered_model_version)

    def variant_versions(self, parent: str) -> dict[str, str]:
        """{variant name: version} of the variants already registered from `parent`."""
        found = self.retrying(
            "search model versions", lambda: self.client.search_model_versions(f"name='{self.model_name}'")
        )
        return {
            mv.tags[T.VARIANT]: str(mv.version)
            for mv in found
            if mv.tags.get(T.VARIANT_OF) == str(parent) and T.VARIANT in mv.tags
        }

    def log_variant(
        self,
        run_id: str,
        parent: str,
        variant: str,
        model_file: Path,
        classes: list[str],
        example_image: bytes,
        calibration: Path | None,
        tags: dict[str, str],
    ) -> str:
        """Register `model_file` (a compress variant of version `parent`) as its own version, logged
        into the parent's run as model `variant_<name>`; no alias is set. Returns the version."""
        tags = {**tags, T.VARIANT: variant, T.VARIANT_OF: str(parent)}
        with mlflow.start_run(run_id=run_id):
            info = log_model(
                model_file,
                classes,
                example_image,
                registered_name=self.model_name,
                calibration=calibration,
                version_tags=tags,
                name=f"variant_{variant}",
            )
        return str(info.registered_model_version)

    def log_card(self, run_id: str, version: str, html: str, uri: str) -> None:
        """The version's model card: an HTML artifact of its run (card/model_card.html, retried like every
        upload), then linked from the version's tags and description (`registry.link_card`)."""
        self.retrying("log model card", lambda: self.client.log_text(run_id, html, T.CARD_ARTIFACT))
        registry.link_card(self.client, self.model_name, version, uri)

    def tag_lineage(self, run_id: str, version: str, facts: dict[str, str], version_tags: dict[str, str]) -> None:
        """Lineage: every fact on the run (tags and the artifact `lineage/lineage.json`), the two
        `version_tags` on the model version (integrations.tags.VERSION_LINEAGE)."""
        self.client.log_dict(run_id, facts, "lineage/lineage.json")
        self.tag(run_id, None, facts)
        self.tag(None, version, version_tags)

    def tag(self, run_id: str | None, version: str | None, tags: dict[str, str]) -> None:
        """The same tags on the run (one batch) and on its model version (each when given)."""
        from mlflow.entities import RunTag

        if run_id:
            items = [RunTag(k, v) for k, v in tags.items()]
            for i in range(0, len(items), 100):  # MLflow's batch limit for tags
                self.client.log_batch(run_id, tags=items[i : i + 100])
        for k, v in tags.items() if version else ():
            self.client.set_model_version_tag(self.model_name, version, k, v)
