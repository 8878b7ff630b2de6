"""Shared fixtures: tiny real data, tiny params, a temp MLflow store. No mocks."""

from __future__ import annotations

import os

# offline machine: telemetry off and no hub downloads (before any library is imported)
for key, value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(key, value)

import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

from vistune.config import Params, load_params, parse_params, to_dict  # noqa: E402
from vistune.layout import Layout  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HYMENOPTERA = REPO.parent / "shared" / "datasets" / "hymenoptera"

# A configuration small enough for 2 CPU cores: ~10 images per class, 16 px, one epoch.
TINY = {
    "data": {"source": "sklearn:digits", "max_per_class": 10, "val_fraction": 0.2, "test_fraction": 0.2},
    "validate": {"min_images_per_class": 2},
    "augment": {"image_size": 16},
    "train": {"epochs": 1, "batch_size": 32, "warmup_epochs": 0.5, "patience": 0},
    "evaluate": {"batch_size": 64},
}


def tiny_params_dict(**overrides: dict) -> dict:
    base = to_dict(load_params(REPO / "params.yaml"))
    for section, values in {**TINY}.items():
        base[section].update(values)
    for section, values in overrides.items():
        base[section].update(values)
    return base


def tiny_register_cfg(root: Path):
    """The tiny params' `register` section with its MLflow store (sqlite + artifacts) under `root`."""
    return dataclasses.replace(
        parse_params(tiny_params_dict()).register,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=str(root / "artifacts"),
    )


_USER_MLFLOW_URIS = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}


@pytest.fixture(autouse=True)
def _keep_mlflow_uri_env():
    """`mlflow.set_tracking_uri` / `set_registry_uri` (both called by `tracking.setup`, also in module
    fixtures) write MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI into os.environ; a later test's subprocesses
    (dvc repro -> register) would inherit another test's store. In-process MLflow keeps its own globals:
    the tracking one stays (module fixtures rely on it), the registry one is cleared so it follows the
    tracking URI, as everything in vistune sets them equal; else a test that sets only the tracking URI
    resolves `models:/` in the registry an earlier test left behind (seen: a stopped server's)."""
    for key, value in _USER_MLFLOW_URIS.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_registry_uri(None)  # None: fall back to MLFLOW_REGISTRY_URI, then the tracking URI
    yield


@pytest.fixture
def tiny_params() -> Params:
    return parse_params(tiny_params_dict())


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def tree_hash(root: Path, ignore: tuple[str, ...] = ()) -> str:
    """Hash of every path, mode and byte under root: proves a folder was left untouched.

    `ignore`: relative paths (files or folders) left out, e.g. (".git", ".dvc/tmp")."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(rel == i or rel.startswith(i + "/") for i in ignore):
            continue
        st = p.lstat()
        h.update(str(p.relative_to(root)).encode("utf-8", "surrogateescape"))
        h.update(oct(st.st_mode).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory) -> Layout:
    """ingest -> validate -> augment on tiny digits, once per session (stages called as functions)."""
    from stages import augment, ingest, validate

    lay = Layout(tmp_path_factory.mktemp("prepared"))
    p = parse_params(tiny_params_dict())
    ingest.run(p.data, lay)
    validate.run(p.validate, lay)
    augment.run(p.augment, lay)
    return lay


@pytest.fixture(scope="session")
def trained_tiny(prepared_tiny: Layout) -> Layout:
    """A real one-epoch fine-tune of EfficientNet-Lite0 (ImageNet weights) on the tiny set."""
    from stages import evaluate, train

    p = parse_params(tiny_params_dict())
    train.run(p.train, p.augment, prepared_tiny, progress=False)
    evaluate.run(p.evaluate, "cpu", prepared_tiny)
    return prepared_tiny


@pytest.fixture
def mlflow_cfg(tmp_path: Path):
    """RegisterCfg pointing at a fresh sqlite store under tmp_path."""
    p = parse_params(tiny_params_dict())
    return dataclasses.replace(
        p.register, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts")
    )


def copy_repo(dest: Path) -> Path:
    """The project's tracked source (no data, no venv) copied into `dest`."""
    by_name = shutil.ignore_patterns(".venv", ".git", ".prefect", "__pycache__", "*.egg-info", ".pytest_cache", ".run")
    top_level = {"data", "mlflow", "tests", "benchmarks"}  # vistune/data/ is code and is copied

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = set(by_name(folder, names))
        if Path(folder) == REPO:
            skip |= top_level & set(names)
        if Path(folder) == REPO / ".dvc":  # the dev checkout's DVC cache and temp state stay behind
            skip |= {"cache", "tmp", "config.local"} & set(names)
        return skip

    shutil.copytree(REPO, dest, ignore=ignore, dirs_exist_ok=True)
    (dest / "mlflow").mkdir(exist_ok=True)
    # the store stays git-ignored, as in the real repo: `dvc exp save` must never sweep it into an experiment
    shutil.copy2(REPO / "mlflow" / ".gitignore", dest / "mlflow" / ".gitignore")
    return dest


def tiny_git_repo(dest: Path, prepare: Callable[[Path], None] | None = None) -> Path:
    """copy_repo + tiny params + no dvc.lock, committed in a fresh git repo (DVC experiments need a commit).

    `prepare(root)` runs before the commit, for tests that add files of their own.
    """
    root = copy_repo(dest)
    write_params(root / "params.yaml", tiny_params_dict())
    (root / "dvc.lock").unlink(missing_ok=True)
    if prepare is not None:
        prepare(root)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["git", "init", "-q"], git + ["add", "-A"], git + ["commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    return root


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(proc: subprocess.Popen | None, grace_s: float = 30) -> None:
    """SIGTERM a server started with start_new_session=True, SIGKILL if it lingers past `grace_s`."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def stop_process_groups(procs: list[subprocess.Popen | None], grace_s: float = 30) -> None:
    """`stop_process_group` for several servers at once: all get SIGTERM first, so their shutdowns overlap
    (one `grace_s` in all, not one each); any still there when it ends is SIGKILLed."""
    import time

    live = [p for p in procs if p is not None and p.poll() is None]
    for proc in live:
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in live:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster on 127.0.0.1 for the session (Debian's server, installed by `make postgres`)."""
    from tests.postgres import Postgres, server_bin_dir

    bin_dir = server_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found: run `make postgres` (apt-get install postgresql)")
    server = Postgres(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


# --- file order for `make test` (-n 2 --dist loadfile --no-loadscope-reorder) -------------------------------
# xdist hands whole files to the two workers in collection order, and a worker takes its next file as soon as
# two or fewer tests of its current one are left. Its default order (most tests first) puts the one-test
# end-to-end files (minutes each) last, where one worker can end up running two of them while the other idles.
# Longest first instead: files by the duration they took last time (pytest's cache), files never timed that
# hold `slow` tests before the rest. Each file's tests keep their order.
_DURATIONS_KEY = "vistune/file_durations"
_file_seconds: dict[str, float] = {}


def pytest_collection_modifyitems(config, items) -> None:
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    known = cache.get(_DURATIONS_KEY, {}) if cache is not None else {}
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    first_index: dict[str, int] = {}
    for i, item in enumerate(items):
        first_index.setdefault(item.nodeid.split("::")[0], i)

    def key(item) -> tuple:
        path = item.nodeid.split("::")[0]
        if path in known:
            return (1, -known[path], first_index[path])
        return (0 if path in slow else 2, 0.0, first_index[path])

    items.sort(key=key)


def pytest_runtest_logreport(report) -> None:
    path = report.nodeid.split("::")[0]
    _file_seconds[path] = _file_seconds.get(path, 0.0) + report.duration


def pytest_sessionfinish(session) -> None:
    """Record each file's duration (setup + call + teardown) for the next run's order; the xdist controller
    sees every worker's reports, the workers record nothing."""
    cache = getattr(session.config, "cache", None)
    if cache is None or hasattr(session.config, "workerinput") or not _file_seconds:
        return
    known = cache.get(_DURATIONS_KEY, {})
    known.update({path: round(seconds, 2) for path, seconds in _file_seconds.items()})
    cache.set(_DURATIONS_KEY, known)
