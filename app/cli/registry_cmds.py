"""`vistune promote | rollback | archive | status | history | lineage | card`: the registry's actions.

Each action is also a Prefect flow in `flows/promote.py`; both call `integrations.registry` under the
registry lock (`flows.cross_host_lock` adds the lock every host sees when a Prefect server is set).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMANDS = ("promote", "rollback", "archive", "status", "history", "lineage", "card")


def add_parsers(sub) -> None:
    p = sub.add_parser("promote", help="make VERSION the champion")
    p.add_argument("version")
    p.add_argument("--reason", default=None, help="why; recorded in the alias history (required with --force)")
    p.add_argument(
        "--force",
        action="store_true",
        help="promote even if the gate kept VERSION as challenger or it is worse than the champion",
    )
    r = sub.add_parser("rollback", help="move champion back to the previous champion (or the one as of --to-time)")
    r.add_argument("--to-time", default=None, help="ISO time, UTC unless it has a zone: champion as of that time")
    a = sub.add_parser("archive", help="drop a version's aliases and tag it archived")
    a.add_argument("version")
    sub.add_parser("status", help="list versions, aliases and gate decisions")
    sub.add_parser("history", help="every alias change: when, who, from which version to which, why")
    lg = sub.add_parser("lineage", help="a version's lineage tags and the commands that rebuild it")
    lg.add_argument("version")
    lg.add_argument("--params-out", default=None, help="write the version's resolved params to this YAML file")
    c = sub.add_parser("card", help="write a version's model card (self-contained HTML) to a local file")
    c.add_argument("version")
    c.add_argument("--out", default=None, help="output file (default: model_card_v<VERSION>.html)")


def status(client, name: str) -> None:
    from integrations import history
    from integrations.registry import TAG_PREFIX

    for change in history.unrecorded_changes(client, name):
        print(f"WARNING: {change.line(name)}")
    found = client.search_model_versions(f"name='{name}'")
    # search results leave `aliases` empty on some stores; fetch each version for its aliases
    versions = sorted((client.get_model_version(name, v.version) for v in found), key=lambda v: int(v.version))
    if not versions:
        print(f"no versions of {name!r} registered yet; run `make demo` or `dvc repro`")
        return
    print(f"{'version':>7}  {'aliases':<22} {'gate':<20} last action")
    for mv in versions:
        aliases = ",".join(sorted(mv.aliases or []))
        variant = mv.tags.get(TAG_PREFIX + "variant")
        described = (mv.description or "").splitlines()[:1]  # one row per version: the card link is below it
        last = f"variant {variant} of v{mv.tags.get(TAG_PREFIX + 'variant_of')}" if variant else "".join(described)
        print(f"{mv.version:>7}  {aliases:<22} {mv.tags.get(TAG_PREFIX + 'gate', '-'):<20} {last}")


def lineage(client, name: str, version: str, params_out: str | None) -> None:
    from integrations import lineage as lineage_tags

    print(lineage_tags.describe(client, name, version))
    if params_out:
        import yaml

        from vistune.io import write_text

        write_text(
            Path(params_out), yaml.safe_dump(lineage_tags.version_params(client, name, version), sort_keys=False)
        )
        print(f"wrote v{version}'s params to {params_out}")


def _move_and_announce(args: argparse.Namespace, client, lock, name: str, metric: str) -> None:
    """Move `champion` and send `vistune.champion.changed`, as the promote/rollback flows do (a serving
    fleet or an automation may listen); waits for its delivery before this short-lived command exits.
    No Prefect API: once the alias moved, one line says the event was not sent."""
    from flows import events

    api = events.configured()
    if api:
        events.install()
    try:
        _move_champion(args, client, lock, name, metric)
    finally:
        if api and not events.flush():
            print(f"note: {events.CHAMPION_CHANGED} may not have reached {api}", file=sys.stderr)
    if not api:
        print(
            f"note: no Prefect API configured (PREFECT_API_URL): {events.CHAMPION_CHANGED} not sent; "
            "the alias moved all the same",
            file=sys.stderr,
        )


def run(args: argparse.Namespace, client, lock, name: str, metric: str = "test_macro_f1") -> None:
    """One registry action on an open registry (`lock`: the registry lock for alias changes; `metric`:
    the gate metric the promotion guard compares)."""
    from integrations import registry

    if args.cmd in ("promote", "rollback"):
        _move_and_announce(args, client, lock, name, metric)
    elif args.cmd == "history":
        from integrations import history

        print(history.table(history.read(client, name), history.unrecorded_changes(client, name)))
    elif args.cmd == "card":
        from app import card

        out = card.fetch(client, name, args.version, Path(args.out or f"model_card_v{args.version}.html"))
        print(f"{name} v{args.version}: model card written to {out}")
    elif args.cmd == "lineage":
        lineage(client, name, args.version, args.params_out)
    elif args.cmd == "archive":
        registry.archive(client, name, args.version, lock)
        print(f"{name}: v{args.version} archived")
    elif args.cmd == "status":
        status(client, name)


def _move_champion(args: argparse.Namespace, client, lock, name: str, metric: str) -> None:
    from integrations import registry

    if args.cmd == "promote":
        reason = args.reason or ("" if args.force else "manual promotion")
        prev = registry.promote(client, name, args.version, lock, reason=reason, metric=metric, force=args.force)
        print(f"{name}: champion v{prev or '-'} -> v{args.version}")
    else:
        frm, to = registry.rollback(client, name, lock, to_time=args.to_time)
        print(f"{name}: champion rolled back v{frm} -> v{to}")
