"""Follow a registry alias: poll it, load the version it points at, swap the served model atomically.

Why polling: one `get_model_version_by_alias` call works on every store vistune supports (a sqlite
file, an MLflow server, PostgreSQL), needs no inbound port and no Prefect server, and costs a few
milliseconds (benchmarks/RESULTS.md); the swap latency is dominated by loading the new version,
not by the poll interval. A Prefect event or an MLflow webhook would add a dependency to save at
most one interval.

The served model is one immutable `Served` object behind one reference: a request takes the
reference once and keeps it to the end, so requests in flight finish on the old model and later
ones get the new one; the old model is freed when its last request ends. A version that fails to
load leaves the old one serving; it is retried only after `retry_failed_s` or when the alias moves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger("vistune.serve")


@dataclass(frozen=True)
class Served:
    """One loaded version: what answers requests until the next swap."""

    name: str
    version: str
    model: Any  # mlflow.pyfunc.PyFuncModel
    loaded_at: float = field(default_factory=time.time)
    load_s: float = 0.0

    @property
    def input_schema(self):
        return self.model.metadata.get_input_schema()


def load_version(name: str, version: str) -> Served:
    """The pyfunc of `name` version `version` (by number, so a second alias move mid-load cannot
    mix versions); the model's own load guards (digest check) run inside `load_model`."""
    import mlflow.pyfunc

    t0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return Served(name, str(version), model, load_s=time.perf_counter() - t0)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


class AliasWatcher:
    """The served model for `name@alias` (or one pinned `version`), kept current by `poll_once`."""

    def __init__(
        self,
        client,
        name: str,
        alias: str | None = "champion",
        version: str | None = None,
        interval_s: float = 5.0,
        retry_failed_s: float = 60.0,
        load: Callable[[str, str], Served] = load_version,
    ) -> None:
        if (alias is None) == (version is None):
            raise ValueError("serve either an alias or a pinned version")
        self.client, self.name, self.alias, self.pinned = client, name, alias, version
        self.interval_s, self.retry_failed_s, self._load = interval_s, retry_failed_s, load
        self._served: Served | None = None
        self._failed: dict[str, float] = {}  # version -> when it last failed to load
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> Served | None:
        """The model to answer with; read it once per request."""
        return self._served

    def target(self) -> str:
        """The version the alias points at now (or the pinned one)."""
        if self.pinned is not None:  # an unknown version fails here, in one line, before serving starts
            return str(self.client.get_model_version(self.name, self.pinned).version)
        return str(self.client.get_model_version_by_alias(self.name, self.alias).version)

    def poll_once(self) -> str:
        """Look at the alias once and swap when it moved: "same", "swapped", "failed", "skipped"
        (a version that failed recently) or "unreachable" (the registry did not answer)."""
        try:
            version = self.target()
        except Exception as exc:  # noqa: BLE001 - registry down or alias deleted: keep serving what we have
            self.last_error = f"cannot read {self.name}@{self.alias}: {_first_line(exc)}"
            _log.warning("%s; still serving v%s", self.last_error, self._served and self._served.version)
            return "unreachable"
        old = self._served
        if old is not None and old.version == version:
            return "same"
        failed_at = self._failed.get(version)
        if failed_at is not None and time.time() - failed_at < self.retry_failed_s:
            return "skipped"
        try:
            new = self._load(self.name, version)
        except Exception as exc:  # noqa: BLE001 - a broken version must not take serving down
            self._failed[version] = time.time()
            self.last_error = f"v{version} failed to load ({_first_line(exc)})"
            _log.error("%s; still serving v%s", self.last_error, old.version if old else "none")
            _log.debug("load failure of v%s", version, exc_info=True)
            return "failed"
        self._served = new  # the swap: one reference assignment
        self._failed.pop(version, None)
        self.last_error = None
        _log.warning(
            "%s %s: now serving v%s (was v%s; loaded in %.1f s)",
            self.name,
            f"@{self.alias}" if self.alias else "pinned",
            version,
            old.version if old else "-",
            new.load_s,
        )
        return "swapped"

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll_once()

    def start(self) -> None:
        """Poll in a daemon thread (a pinned version never changes: no thread)."""
        if self.pinned is None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vistune-alias-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
