"""Registry aliases: the promotion gate, manual promote, rollback and archive.

Production is the `champion` alias, the latest candidate is `challenger` (never the deprecated
stages). Every alias change writes its reason onto the model version's tags and description and
appends an entry to the registry's alias history (`integrations.history`), which rollback reads;
the gate runs under a lock so two registrations racing end with one consistent champion: a file lock
(one host) plus, when the caller hands one in (`RegistryLock.shared`, e.g. `flows.cross_host_lock.hold`),
a lock every host sees.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from integrations import history, promotion_guard, tags as T
from vistune.config import RegisterCfg

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = T.PREFIX  # kept for callers that spell keys from it; new code uses integrations.tags


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
    significance: str | None = None  # the paired test's verdict against the champion, when one ran
    p_value: float | None = None  # that test's p-value
    verdict: str | None = None  # significantly better | significantly worse | no significant difference
    pending_approval: bool = False  # passed, but `register.approval: required`: a reviewer decides (flows/approval.py)

    def as_dict(self) -> dict:
        return asdict(self)


# (metric key in metrics.json, RegisterCfg field, "min" = floor / "max" = ceiling)
@dataclass(frozen=True)
class ChampionChange:
    """One move of `champion`: what a listener (flows/events.py: `vistune.champion.changed`) is told."""

    model: str
    old: str | None
    new: str
    action: str  # gate | approval | promote | override (a forced promotion) | rollback
    reason: str
    actor: str | None


_LISTENERS: list[Callable[[ChampionChange], None]] = []


def on_champion_change(listener: Callable[[ChampionChange], None]) -> None:
    """Call `listener` after every champion move in this process (once per listener). The registry
    stays free of Prefect: flows/events.py registers the emitter of `vistune.champion.changed`."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def _notify(change: ChampionChange) -> None:
    for listener in tuple(_LISTENERS):  # a copy: a listener may add another
        try:
            listener(change)
        except Exception as exc:  # noqa: BLE001 - a listener never undoes or blocks an alias move
            logging.getLogger(__name__).warning("champion change listener failed: %s", exc)


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


@dataclass(frozen=True)
class Comparison:
    """Challenger vs champion, both re-scored on this run's test split (see `app.gate_report`).

    `significant` is None when no test is required (`register.gate_test: none`): the gate then keeps
    the margin rule on the recorded metrics. `error` says why the champion could not be re-scored.
    """

    significant: bool | None
    summary: str
    champion_value: float | None = None  # gate metric, re-scored (None: metric not re-scorable)
    challenger_value: float | None = None
    error: str | None = None
    verdict: str = "not significant"  # significantly better | significantly worse | no significant difference
    p_value: float | None = None  # the gate test's p-value (McNemar; bootstrap: P(not better))


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_facts(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    """Every vistune fact of a version: its run's tags (lineage, identity, the gate's details) under the
    version's own short set. Versions registered before the short set carry everything themselves."""
    mv = client.get_model_version(name, version)
    run_tags = client.get_run(mv.run_id).data.tags if mv.run_id else {}
    return {k: v for k, v in run_tags.items() if k.startswith(T.PREFIX)} | dict(mv.tags)


def _tag_run(client: MlflowClient, name: str, version: str, tags: Mapping[str, str | None]) -> None:
    """Facts about the gate of `version` on the run that logged it (one gated version per run)."""
    run_id = client.get_model_version(name, version).run_id
    for key, value in tags.items() if run_id else ():
        if value is not None:
            client.set_tag(run_id, key, value)


def version_metric(client: MlflowClient, name: str, version: str, metric: str) -> float | None:
    mv = client.get_model_version(name, version)
    tagged = mv.tags.get(T.metric(metric))
    if tagged is not None:
        return float(tagged)
    run_metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return run_metrics.get(metric)


SharedLock = Callable[[str], AbstractContextManager]  # model name -> a lock every host sees


@dataclass(frozen=True)
class RegistryLock:
    """Where the file lock lives (`dir`, one host) and an optional lock all hosts see: `shared(model_name)`
    is a context manager held inside the file lock (`flows.cross_host_lock.hold` is the Prefect one)."""

    dir: Path
    shared: SharedLock | None = None

    def __str__(self) -> str:
        return str(self.dir)


@contextmanager
def registry_lock(lock_dir: Path | RegistryLock, model_name: str | None = None) -> Iterator[None]:
    """Serialize alias changes across processes sharing this store: a file lock (one host) and, for
    `model_name`, the lock's `shared` context manager when it has one (all hosts)."""
    lock = lock_dir if isinstance(lock_dir, RegistryLock) else RegistryLock(Path(lock_dir))
    lock.dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock.dir / ".registry.lock"), timeout=300):
        if model_name is None or lock.shared is None:
            yield
            return
        with lock.shared(model_name):
            yield


def _record(client: MlflowClient, name: str, version: str, action: str, reason: str) -> None:
    """The last action on the version: its description's first line (`[time] action: reason`, what
    `vistune status` shows), then the card link. Not a tag: the version row stays short; the alias
    history holds every action with its reason."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    card = client.get_model_version(name, version).tags.get(T.CARD)
    client.update_model_version(
        name, version, description=f"[{stamp}] {action}: {reason}" + _card_line(client, version, card)
    )


CARD_PREFIX = "\n\nModel card: "


def _card_line(client: MlflowClient, version: str, card: str | None) -> str:
    """A markdown link the MLflow UI renders clickable (its own page, relative: any host), to the card
    in the run's artifact view; `runs:/...` text would not be a link."""
    if not card:
        return ""
    run_id, _, artifact = card.removeprefix("runs:/").partition("/")
    try:
        experiment = client.get_run(run_id).info.experiment_id
    except MlflowException:  # the run is gone: the URI as text
        return f"{CARD_PREFIX}{card} (`vistune card {version}` writes it locally)"
    return (
        f"{CARD_PREFIX}[{artifact.rsplit('/', 1)[-1]}](#/experiments/{experiment}/runs/{run_id}/artifacts/"
        f"{artifact}) (`vistune card {version}` writes it locally)"
    )


def link_card(client: MlflowClient, name: str, version: str, uri: str) -> None:
    """Tag the version with its model card and name it in the description (kept by later actions)."""
    client.set_model_version_tag(name, version, T.CARD, uri)
    description = (client.get_model_version(name, version).description or "").split(CARD_PREFIX)[0]
    client.update_model_version(name, version, description=description + _card_line(client, version, uri))


def _set_champion(
    client: MlflowClient, name: str, version: str, previous: str | None, action: str, reason: str, actor: str | None
) -> None:
    actor = actor or history.default_actor()  # the alias history and the listeners name the same actor
    client.set_registered_model_alias(name, CHAMPION, version)
    history.append(client, name, CHAMPION, previous, version, action, reason, actor)
    tags = client.get_model_version(name, version).tags
    if tags.get(T.ROLLED_BACK):  # deliberately brought back: eligible for rollback again
        client.delete_model_version_tag(name, version, T.ROLLED_BACK)
    if previous != version:
        _notify(ChampionChange(name, previous, str(version), action, reason, actor))


def _decide(
    value: float,
    champ: str | None,
    champ_value: float | None,
    metric: str,
    min_improvement: float,
    failures: list[str],
    comparison: Comparison | None,
) -> tuple[bool, str]:
    if failures:
        return False, "fails thresholds: " + "; ".join(failures) + (
            f"; champion v{champ} unchanged" if champ else "; no champion set"
        )
    if champ is None:
        return True, f"no champion yet; {metric}={value:.4f}"
    testing = comparison is not None and comparison.significant is not None
    if testing and comparison.error:
        return False, (
            f"champion v{champ} could not be re-scored on this test split ({comparison.error}); "
            f"champion unchanged (promote by hand: `vistune promote <version>`)"
        )
    if champ_value is None:
        return True, f"champion v{champ} has no {metric}; {metric}={value:.4f}"
    scored = " (both re-scored on this test split)" if testing and comparison.champion_value is not None else ""
    if testing and not comparison.significant and value >= champ_value:
        return False, (
            f"{comparison.verdict}: {metric} {value:.4f} vs champion v{champ} {champ_value:.4f}{scored}; "
            f"{comparison.summary}; champion unchanged"
        )
    if value <= champ_value + min_improvement:
        return False, (
            f"{metric} {value:.4f} does not beat champion v{champ} {champ_value:.4f} "
            f"by more than {min_improvement}{scored}; champion unchanged"
        )
    if testing and not comparison.significant:
        return False, (
            f"{comparison.verdict}: {metric} {value:.4f} vs champion v{champ} {champ_value:.4f}{scored}; "
            f"{comparison.summary}; champion unchanged"
        )
    why = f"; {comparison.summary}" if testing else ""
    return True, (
        f"{metric} {value:.4f} beats champion v{champ} {champ_value:.4f} by more than {min_improvement}{scored}{why}"
    )


def gate(
    client: MlflowClient,
    name: str,
    version: str,
    metric: str,
    value: float,
    min_improvement: float,
    lock_dir: Path | RegistryLock,
    failures: list[str] | None = None,
    compare: Callable[[str], Comparison] | None = None,
    actor: str | None = None,
    approval_required: bool = False,
) -> Decision:
    """Make `version` the challenger; promote it to champion if it passes every threshold
    (`failures` empty, see `threshold_failures`), beats the champion by the margin and, when
    `compare(champion_version)` runs a significance test, the gain is significant. `compare`
    is called under the lock, so it always judges against the champion actually replaced.
    `approval_required`: a version that passes stays challenger, tagged pending, for `review`."""
    failures = list(failures or [])
    with registry_lock(lock_dir, name):
        history.record_outside(client, name, actor)
        client.set_model_version_tag(name, version, T.metric(metric), repr(float(value)))
        old_challenger = alias_version(client, name, CHALLENGER)
        client.set_registered_model_alias(name, CHALLENGER, version)
        history.append(client, name, CHALLENGER, old_challenger, version, "gate", f"registered v{version}", actor)
        champ = alias_version(client, name, CHAMPION)
        champ_value = version_metric(client, name, champ, metric) if champ else None
        comparison = compare(champ) if compare is not None and champ and champ != version else None
        if comparison is not None and comparison.significant is not None and comparison.champion_value is not None:
            champ_value, value = comparison.champion_value, float(comparison.challenger_value)  # fresh numbers
        promoted, reason = _decide(float(value), champ, champ_value, metric, min_improvement, failures, comparison)
        pending = promoted and approval_required
        if pending:
            promoted, reason = False, f"gate passed, approval required: {reason}"
            client.set_model_version_tag(name, version, T.APPROVAL, "pending")
        if promoted:
            _set_champion(client, name, version, champ, "gate", reason, actor)
        client.set_model_version_tag(
            name, version, T.GATE, T.GATE_PROMOTED if promoted else T.GATE_PENDING if pending else T.GATE_KEPT
        )
        _tag_run(
            client,
            name,
            version,
            {
                T.DECISION_REASON: reason[:4000],
                T.PREVIOUS_CHAMPION: champ,
                T.GATE_FAILURES: "; ".join(failures) if failures else None,
                T.GATE_SIGNIFICANCE: comparison.summary[:4000] if comparison is not None else None,
            },
        )
        _record(
            client,
            name,
            version,
            "gate: " + (T.GATE_PROMOTED if promoted else T.GATE_PENDING if pending else T.GATE_KEPT),
            reason,
        )
        return Decision(
            version,
            promoted,
            reason,
            metric,
            float(value),
            champ,
            champ_value,
            failures,
            comparison.summary if comparison is not None else None,
            comparison.p_value if comparison is not None else None,
            comparison.verdict if comparison is not None and comparison.significant is not None else None,
            pending,
        )


REVIEW_OUTCOMES = ("approved", "rejected", "timed_out")


def review(
    client: MlflowClient,
    name: str,
    version: str,
    lock_dir: Path | RegistryLock,
    outcome: str,
    comment: str,
    actor: str,
    compared_with: str | None,
    metric: str = RegisterCfg.gate_metric,
    force: bool = False,
) -> tuple[str, str]:
    """Close a pending approval (`register.approval: required`): approved -> champion, rejected or
    timed out -> stays challenger. An approval given after `champion` moved away from the version the
    gate compared with (`compared_with`) is `stale`: the gate's evidence no longer holds, so nothing
    moves; so is one the promotion guard refuses (`refused`: worse than the champion by `metric`) unless
    `force` with a comment (the reason; an `override` entry, as `promote --force`).
    One alias-history entry per outcome, with the reviewer's comment and actor. Returns (outcome, reason)."""
    if outcome not in REVIEW_OUTCOMES:
        raise ValueError(f"unknown review outcome {outcome!r}; valid: {list(REVIEW_OUTCOMES)}")
    unforced = " (force ignored: it needs a comment saying why)" if force and not comment.strip() else ""
    force = force and not unforced  # the form is answered once: a missing reason refuses, it does not raise
    with registry_lock(lock_dir, name):
        history.record_outside(client, name, actor)
        state = client.get_model_version(name, version).tags.get(T.APPROVAL)
        if state != "pending":
            raise ValueError(f"v{version} of {name!r} is not waiting for approval (vistune.approval={state or '-'})")
        champ = alias_version(client, name, CHAMPION)
        said = f": {comment}" if comment else ""
        if outcome == "approved" and champ not in (compared_with, version):
            outcome = "stale"
            reason = (
                f"approved by {actor}{said}, but champion moved from v{compared_with or '-'} to v{champ} while "
                f"waiting; v{version} stays challenger (`vistune promote {version}` to override)"
            )
        elif outcome == "approved" and (refused := _refusal(client, name, version, champ, metric)):
            if force:
                reason = f"approved by {actor}, {promotion_guard.forced_reason(comment, refused)}"
            else:
                outcome, reason = "refused", f"approved by {actor}{said}, but {refused}{unforced}"
        elif outcome == "approved":
            refused, reason = None, f"approved by {actor}{said}"
        elif outcome == "rejected":
            reason = f"rejected by {actor}{said}; v{version} stays challenger"
        else:
            reason = f"{comment or 'no decision in time'}; v{version} stays challenger"
        if outcome == "approved":
            _set_champion(client, name, version, champ, "override" if refused else "approval", reason, actor)
        else:  # champion unchanged: still one entry, so the log shows who decided what
            history.append(client, name, CHAMPION, champ, champ, "approval", f"v{version} {reason}", actor)
        client.set_model_version_tag(name, version, T.APPROVAL, outcome)
        client.set_model_version_tag(name, version, T.GATE, T.GATE_PROMOTED if outcome == "approved" else T.GATE_KEPT)
        _record(client, name, version, f"approval: {outcome}", reason)
        return outcome, reason


def _refusal(client: MlflowClient, name: str, version: str, champion: str | None, metric: str) -> str | None:
    """The promotion guard's answer for `version` over `champion`, from the numbers on both versions."""
    gate_outcome = client.get_model_version(name, version).tags.get(T.GATE)
    return promotion_guard.refusal(
        version,
        gate_outcome,
        metric,
        version_metric(client, name, version, metric),
        champion,
        version_metric(client, name, champion, metric) if champion else None,
    )


def promote(
    client: MlflowClient,
    name: str,
    version: str,
    lock_dir: Path | RegistryLock,
    reason: str = "manual promotion",
    actor: str | None = None,
    metric: str = RegisterCfg.gate_metric,
    force: bool = False,
) -> str | None:
    """Point `champion` at `version`; returns the previous champion. The promotion guard refuses a
    version the gate kept or one worse than the champion by `metric` (ValueError, one line) unless
    `force`; a forced promotion is an `override` entry in the alias history, with the reason."""
    promotion_guard.check_force(force, reason)
    with registry_lock(lock_dir, name):
        client.get_model_version(name, version)  # raises a clear error for unknown versions
        history.record_outside(client, name, actor)
        previous = alias_version(client, name, CHAMPION)
        refused = _refusal(client, name, version, previous, metric)
        if refused and not force:
            raise ValueError(refused)
        action, why = ("override", promotion_guard.forced_reason(reason, refused)) if refused else ("promote", reason)
        _set_champion(client, name, version, previous, action, why, actor)
        _record(client, name, version, "promoted to champion" + (" (forced)" if refused else ""), why)
        return previous


def _rollback_target(client: MlflowClient, name: str, current: str, to_time: str | None) -> str:
    entries = history.read(client, name)
    if to_time is not None:
        when = history.parse_time(to_time)
        target = history.holder_as_of(entries, when)
        if target is None:
            raise ValueError(f"model {name!r} had no champion at {when.isoformat()} (see `vistune history`)")
        if target == current:
            raise ValueError(f"v{current} was already champion at {when.isoformat()}; nothing to roll back")
        if client.get_model_version(name, target).tags.get(T.ARCHIVED) == "true":
            raise ValueError(
                f"v{target} (champion at {when.isoformat()}) is archived; `vistune promote {target}` "
                f"to bring it back deliberately"
            )
        return target
    unusable = {
        v.version
        for v in client.search_model_versions(f"name='{name}'")
        if v.tags.get(T.ARCHIVED) == "true" or v.tags.get(T.ROLLED_BACK) == "true"
    }
    target = history.previous_holder(entries, current, {str(v) for v in unusable})
    if target is None:  # stores written before the history existed: the gate's record
        target = version_facts(client, name, current).get(T.PREVIOUS_CHAMPION)
    if not target:
        raise ValueError(f"champion v{current} of {name!r} records no previous champion to roll back to")
    return target


def rollback(
    client: MlflowClient, name: str, lock_dir: Path | RegistryLock, to_time: str | None = None, actor: str | None = None
) -> tuple[str, str]:
    """Move `champion` back to the previous champion (the latest earlier one not archived or
    rolled back), or to the champion as of `to_time`; returns (from, to)."""
    with registry_lock(lock_dir, name):
        history.record_outside(client, name, actor)
        current = alias_version(client, name, CHAMPION)
        if current is None:
            raise ValueError(f"model {name!r} has no champion to roll back")
        target = _rollback_target(client, name, current, to_time)
        why = f"rollback from v{current}" + (f" to the champion as of {to_time}" if to_time else "")
        _set_champion(client, name, target, current, "rollback", why, actor)
        _record(client, name, target, "rolled back to champion", why)
        client.set_model_version_tag(name, current, T.ROLLED_BACK, "true")
        return current, target


def archive(
    client: MlflowClient, name: str, version: str, lock_dir: Path | RegistryLock, actor: str | None = None
) -> None:
    """Take a version out of service: drop its aliases and tag it archived (never the champion)."""
    with registry_lock(lock_dir, name):
        history.record_outside(client, name, actor)
        mv = client.get_model_version(name, version)
        if CHAMPION in (mv.aliases or []):
            raise ValueError(f"v{version} is the champion; promote or roll back to another version first")
        for alias in mv.aliases or []:
            client.delete_registered_model_alias(name, alias)
            history.append(client, name, alias, version, None, "archive", f"v{version} archived", actor)
        client.set_model_version_tag(name, version, T.ARCHIVED, "true")
        _record(client, name, version, "archived", "manual archive")
