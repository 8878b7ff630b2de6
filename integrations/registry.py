"""Registry aliases: the promotion gate, manual promote, rollback and archive.

Production is the `champion` alias, the latest candidate is `challenger` (never the deprecated
stages). Every alias change writes its reason onto the model version's tags and description,
and the gate runs under a lock so two registrations racing end with one consistent champion.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "vistune."


@dataclass
class Decision:
    version: str
    promoted: bool
    reason: str
    metric: str
    value: float
    champion_before: str | None
    champion_value: float | None
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


# (metric key in metrics.json, RegisterCfg field, "min" = floor / "max" = ceiling)
THRESHOLDS = (
    ("test_accuracy", "min_accuracy", "min"),
    ("test_ece", "max_ece", "max"),
    ("test_robust_accuracy", "min_robust_accuracy", "min"),
)


def threshold_failures(metrics: Mapping[str, float], cfg) -> list[str]:
    """Every floor/ceiling in `register.*` the candidate misses. A metric evaluate did not report
    (e.g. robustness switched off) is only a failure if its threshold is actually set."""
    failures = []
    for key, field_name, kind in THRESHOLDS:
        limit = float(getattr(cfg, field_name))
        inactive = (kind == "min" and limit <= 0.0) or (kind == "max" and limit >= 1.0)
        if key not in metrics:
            if not inactive:
                failures.append(f"{key} not reported but register.{field_name}={limit} is set")
            continue
        value = float(metrics[key])
        if kind == "min" and value < limit:
            failures.append(f"{key} {value:.4f} < register.{field_name} {limit}")
        elif kind == "max" and value > limit:
            failures.append(f"{key} {value:.4f} > register.{field_name} {limit}")
    return failures


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_metric(client: MlflowClient, name: str, version: str, metric: str) -> float | None:
    mv = client.get_model_version(name, version)
    tagged = mv.tags.get(f"{TAG_PREFIX}{metric}")
    if tagged is not None:
        return float(tagged)
    run_metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return run_metrics.get(metric)


@contextmanager
def registry_lock(lock_dir: Path) -> Iterator[None]:
    """Serialize alias changes across processes sharing this store."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / ".registry.lock"), timeout=300):
        yield


def _record(client: MlflowClient, name: str, version: str, action: str, reason: str, previous: str | None) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    client.set_model_version_tag(name, version, f"{TAG_PREFIX}last_action", action)
    client.set_model_version_tag(name, version, f"{TAG_PREFIX}last_action_at", stamp)
    client.set_model_version_tag(name, version, f"{TAG_PREFIX}decision_reason", reason)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, version, f"{TAG_PREFIX}previous_champion", previous)
    client.update_model_version(name, version, description=f"[{stamp}] {action}: {reason}")


def gate(client: MlflowClient, name: str, version: str, metric: str, value: float, min_improvement: float,
         lock_dir: Path, failures: list[str] | None = None) -> Decision:
    """Make `version` the challenger; promote it to champion if it passes every threshold
    (`failures` empty, see `threshold_failures`) and beats the champion by the margin."""
    failures = list(failures or [])
    with registry_lock(lock_dir):
        client.set_model_version_tag(name, version, f"{TAG_PREFIX}{metric}", repr(float(value)))
        client.set_registered_model_alias(name, CHALLENGER, version)
        champ = alias_version(client, name, CHAMPION)
        champ_value = version_metric(client, name, champ, metric) if champ else None
        if failures:
            promoted, reason = False, "fails thresholds: " + "; ".join(failures) + (
                f"; champion v{champ} unchanged" if champ else "; no champion set")
        elif champ is None:
            promoted, reason = True, f"no champion yet; {metric}={value:.4f}"
        elif champ_value is None:
            promoted, reason = True, f"champion v{champ} has no {metric}; {metric}={value:.4f}"
        elif value > champ_value + min_improvement:
            promoted, reason = True, (f"{metric} {value:.4f} beats champion v{champ} {champ_value:.4f} "
                                      f"by more than {min_improvement}")
        else:
            promoted, reason = False, (f"{metric} {value:.4f} does not beat champion v{champ} {champ_value:.4f} "
                                       f"by more than {min_improvement}; champion unchanged")
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, f"{TAG_PREFIX}gate", "promoted" if promoted else "rejected")
        if failures:
            client.set_model_version_tag(name, version, f"{TAG_PREFIX}gate_failures", "; ".join(failures))
        _record(client, name, version, "gate: promoted to champion" if promoted else "gate: rejected", reason, champ)
        return Decision(version, promoted, reason, metric, float(value), champ, champ_value, failures)


def promote(client: MlflowClient, name: str, version: str, lock_dir: Path, reason: str = "manual promotion") -> str | None:
    """Point `champion` at `version`; returns the previous champion."""
    with registry_lock(lock_dir):
        client.get_model_version(name, version)  # raises a clear error for unknown versions
        previous = alias_version(client, name, CHAMPION)
        client.set_registered_model_alias(name, CHAMPION, version)
        _record(client, name, version, "promoted to champion", reason, previous)
        return previous


def rollback(client: MlflowClient, name: str, lock_dir: Path) -> tuple[str, str]:
    """Move `champion` back to the version it replaced; returns (from, to)."""
    with registry_lock(lock_dir):
        current = alias_version(client, name, CHAMPION)
        if current is None:
            raise ValueError(f"model {name!r} has no champion to roll back")
        previous = client.get_model_version(name, current).tags.get(f"{TAG_PREFIX}previous_champion")
        if not previous:
            raise ValueError(f"champion v{current} of {name!r} records no previous champion to roll back to")
        client.set_registered_model_alias(name, CHAMPION, previous)
        _record(client, name, previous, "rolled back to champion", f"rollback from v{current}", None)
        client.set_model_version_tag(name, current, f"{TAG_PREFIX}rolled_back", "true")
        return current, previous


def archive(client: MlflowClient, name: str, version: str, lock_dir: Path) -> None:
    """Take a version out of service: drop its aliases and tag it archived (never the champion)."""
    with registry_lock(lock_dir):
        mv = client.get_model_version(name, version)
        if CHAMPION in (mv.aliases or []):
            raise ValueError(f"v{version} is the champion; promote or roll back to another version first")
        for alias in mv.aliases or []:
            client.delete_registered_model_alias(name, alias)
        client.set_model_version_tag(name, version, f"{TAG_PREFIX}archived", "true")
        _record(client, name, version, "archived", "manual archive", None)
