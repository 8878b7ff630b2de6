"""The alias audit log: one tag per alias change on a registry-log MLflow run, one run per model.

Each change (gate, promote, rollback, archive) is a tag `vistune.alias_history.<seq>` holding a small
JSON entry: when (UTC), who (`flow:<Prefect run>` or `cli:<user>`), which alias, from which version
to which, and why. The tags live on a run of the `vistune-registry-log` experiment, not on the
registered model, so the MLflow registry page shows the versions table first; the registered model
carries one short tag, `vistune.alias_history` = `runs:/<log run>`, that says where the log is. One tag
per event never rewrites old entries; the sequence number is allocated under the registry lock, so
the log is totally ordered. Rollback reads it ("previous champion", "champion as of <time>") and
`vistune history` prints it. Stores written before the move (entries on the registered model) are
read as they are and moved to the log run on the next alias change.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, UTC

from integrations import tags as T

PREFIX = T.ALIAS_HISTORY
POINTER = T.ALIAS_HISTORY_RUN  # on the registered model: runs:/<log run id>
LOG_EXPERIMENT = "vistune-registry-log"
MAX_REASON = 1500  # a tag value holds 5000 characters on sqlite; the rest of an entry is small


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str  # UTC ISO-8601 with microseconds
    actor: str
    action: str  # gate | promote | rollback | archive
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def at(self) -> datetime:
        return parse_time(self.time)


def default_actor() -> str:
    """`flow:<run name>` inside a Prefect flow run (flows/ export the name), else `cli:<user>`."""
    run = os.environ.get("VISTUNE_PREFECT_FLOW_RUN_NAME")
    if run:
        return f"flow:{run}"
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        user = "unknown"
    return f"cli:{user}"


def parse_time(text: str) -> datetime:
    """ISO time -> aware UTC datetime; a time without zone is read as UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r} is not ISO-8601; use e.g. 2026-11-23T12:00:00 (UTC)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _log_run_id(client, name: str, model_tags: dict) -> str | None:
    """The log run of `name` named by the registered model's pointer tag (None: none yet)."""
    pointer = model_tags.get(POINTER, "")
    return pointer.removeprefix("runs:/") or None


def _create_log_run(client, name: str) -> str:
    """The run that holds `name`'s log, in its own experiment so experiment views never list it."""
    experiment = client.get_experiment_by_name(LOG_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(LOG_EXPERIMENT)
    run = client.create_run(experiment_id, tags={T.REGISTRY_LOG_FOR: name}, run_name=f"{name} alias history")
    client.set_terminated(run.info.run_id)  # a log, not a running job (tags can still be added)
    client.set_registered_model_tag(name, POINTER, f"runs:/{run.info.run_id}")
    return run.info.run_id


def _entries(tags: dict) -> dict[int, str]:
    """seq -> JSON value of every history tag in `tags`."""
    return {int(k[len(PREFIX) :]): v for k, v in tags.items() if k.startswith(PREFIX) and k[len(PREFIX) :].isdigit()}


def _raw(client, name: str) -> dict[int, str]:
    """Every entry's JSON by sequence number: the log run's tags plus any left on the registered model."""
    model_tags = client.get_registered_model(name).tags or {}
    run_id = _log_run_id(client, name, model_tags)
    found = _entries(model_tags)
    if run_id:
        found.update(_entries(client.get_run(run_id).data.tags))
    return found


def read(client, name: str) -> list[Entry]:
    """Every entry of `name`'s log, oldest first."""
    entries = []
    for seq, value in _raw(client, name).items():
        try:
            d = json.loads(value)
            entries.append(
                Entry(
                    seq, d["time"], d["actor"], d["action"], d["alias"], d.get("from"), d.get("to"), d.get("reason", "")
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a hand-edited tag is shown nowhere rather than breaking every rollback
    return sorted(entries, key=lambda e: e.seq)


def _writable_log(client, name: str) -> tuple[str, int]:
    """The log run (created on first use; older entries on the registered model moved into it) and the
    last sequence number. Call under the registry lock."""
    model_tags = client.get_registered_model(name).tags or {}
    run_id = _log_run_id(client, name, model_tags) or _create_log_run(client, name)
    for key, value in sorted(model_tags.items()):
        if key.startswith(PREFIX):  # the old place: moved once, copy before delete
            client.set_tag(run_id, key, value)
            client.delete_registered_model_tag(name, key)
    return run_id, max(_entries(client.get_run(run_id).data.tags), default=0)


def append(
    client,
    name: str,
    alias: str,
    from_version: str | None,
    to_version: str | None,
    action: str,
    reason: str,
    actor: str | None = None,
) -> Entry:
    """Add one entry; call under `registry.registry_lock` so sequence numbers never collide."""
    run_id, last = _writable_log(client, name)
    entry = Entry(
        last + 1,
        datetime.now(UTC).isoformat(timespec="microseconds"),
        actor or default_actor(),
        action,
        alias,
        None if from_version is None else str(from_version),
        None if to_version is None else str(to_version),
        reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "...",
    )
    value = json.dumps(
        {
            "time": entry.time,
            "actor": entry.actor,
            "action": entry.action,
            "alias": entry.alias,
            "from": entry.from_version,
            "to": entry.to_version,
            "reason": entry.reason,
        }
    )
    client.set_tag(run_id, f"{PREFIX}{entry.seq:06d}", value)
    return entry


def champion_states(entries: list[Entry], alias: str = "champion") -> list[Entry]:
    """The entries that changed `alias`, oldest first (each `to_version` held it from `time`)."""
    return [e for e in entries if e.alias == alias and e.from_version != e.to_version]


def holder_as_of(entries: list[Entry], when: datetime, alias: str = "champion") -> str | None:
    """Which version held `alias` at `when` (None: nobody did yet, or it had been removed)."""
    holder = None
    for e in champion_states(entries, alias):
        if e.at > when:
            break
        holder = e.to_version
    return holder


def previous_holder(entries: list[Entry], current: str, unusable: set[str], alias: str = "champion") -> str | None:
    """The latest earlier holder of `alias` that is not `current` and not in `unusable`
    (archived or rolled-back versions): what "roll back to the previous champion" means."""
    states = champion_states(entries, alias)
    held = [states[0].from_version] if states else []
    held += [e.to_version for e in states]
    for version in reversed(held):
        if version is not None and version != current and version not in unusable:
            return version
    return None


MANAGED = ("champion", "challenger")  # the aliases only vistune sets; others (e.g. "staging") are the user's
OUTSIDE = "outside vistune"


@dataclass(frozen=True)
class OutsideChange:
    """An alias whose registry value differs from the last value the history recorded for it."""

    alias: str
    recorded: str | None  # what vistune last set (None: removed or never set)
    actual: str | None  # what the registry holds now

    def line(self, name: str) -> str:
        was = f"v{self.recorded}" if self.recorded else "unset"
        now = f"v{self.actual}" if self.actual else "unset"
        return (
            f"{name}@{self.alias} is {now} but vistune last set it to {was}: changed {OUTSIDE} (MLflow UI or "
            f"client); `vistune history` shows it, `vistune promote`/`rollback` restores a recorded state"
        )


def outside_changes(entries: list[Entry], aliases: dict[str, str]) -> list[OutsideChange]:
    """The managed aliases the registry (`aliases`: alias -> version) holds differently from the history."""
    recorded: dict[str, str | None] = {}
    for e in entries:
        recorded[e.alias] = e.to_version
    found = []
    for alias in MANAGED:
        actual = aliases.get(alias)
        actual = None if actual is None else str(actual)
        if actual != recorded.get(alias):
            found.append(OutsideChange(alias, recorded.get(alias), actual))
    return found


def unrecorded_changes(client, name: str) -> list[OutsideChange]:
    """`outside_changes` of registered model `name` ([] when it does not exist yet)."""
    try:
        model = client.get_registered_model(name)
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return []
        raise
    return outside_changes(read(client, name), dict(model.aliases or {}))


def record_outside(client, name: str, actor: str | None = None) -> list[OutsideChange]:
    """Write each outside change into the log as an `outside` entry (call under the registry lock, before
    vistune changes an alias), so the history stays complete and rollback sees the real sequence."""
    changes = unrecorded_changes(client, name)
    for d in changes:
        append(
            client,
            name,
            d.alias,
            d.recorded,
            d.actual,
            "outside",
            f"set {OUTSIDE}; found by {actor or default_actor()}",
            OUTSIDE,
        )
    return changes


def table(entries: list[Entry], outside: list[OutsideChange] = ()) -> str:
    """A fixed-width table for `vistune history`; `outside`: current unrecorded changes, shown last."""
    if not entries and not outside:
        return "no alias changes recorded yet"
    rows = [("#", "time (UTC)", "actor", "action", "alias", "from", "to", "reason")]
    rows += [
        (
            str(e.seq),
            e.time[:19].replace("T", " "),
            e.actor,
            e.action,
            e.alias,
            e.from_version or "-",
            e.to_version or "-",
            e.reason,
        )
        for e in entries
    ]
    rows += [
        (
            "!",
            "unknown",
            OUTSIDE,
            "outside",
            d.alias,
            d.recorded or "-",
            d.actual or "-",
            "the registry differs from the last recorded change",
        )
        for d in outside
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(7)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:7], widths)) + "  " + r[7] for r in rows)
