"""Peak anonymous memory (RssAnon) of `stages.validate.run` per phase, in one process, without DVC
or the drift check (whose MLflow registry lookup is a fixed cost of its own).

The raw tree is a generated set (`benchmarks/scale.py` makes them) hard-linked into
`<root>/data/raw/<split>/<class>/` (every 10th file val, the next test, the rest train), so
no bytes are copied. /proc/self/status is sampled every 20 ms; each phase (`store_manifest`:
list + read + sha256 + decode + pHash, parts spilled to disk; `_marked`: duplicate search;
`run_suite`: the GX suite; `_write_outputs`: manifest.csv and reasons; `_finish`: summary) is
wrapped to report RssAnon before, its peak and after.

    nice -n 10 .venv/bin/python benchmarks/validate_memory.py --source /tmp/scale-data/jpeg_100000 --n 100000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from datetime import datetime, UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PHASES = ("store_manifest", "_marked", "run_suite", "_write_outputs", "_finish")


def rss_mb() -> float:
    return int(re.search(r"RssAnon:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def link_tree(source: Path, n: int, root: Path) -> None:
    if (root / ".linked").is_file():
        return
    for k, f in enumerate(sorted(source.rglob("*.jpg"))[:n]):
        d = root / "data" / "raw" / {0: "val", 1: "test"}.get(k % 10, "train") / f.parent.name
        d.mkdir(parents=True, exist_ok=True)
        os.link(f, d / f.name)
    (root / ".linked").write_text("")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, required=True, help="a generated ImageFolder")
    p.add_argument("--n", type=int, required=True, help="files to take from it")
    p.add_argument("--root", type=Path, default=None, help="where the linked tree goes (default /tmp/...)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    root = a.root or Path(f"/tmp/vistune-validate-memory-{a.n}")
    link_tree(a.source, a.n, root)
    peak = {"mb": 0.0}

    def sample() -> None:
        while True:
            peak["mb"] = max(peak["mb"], rss_mb())
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    from stages import validate
    from vistune.config import ValidateCfg
    from vistune.layout import Layout

    phases = []

    def wrap(name: str) -> None:
        f = getattr(validate, name)

        def timed(*args, **kw):
            before, t = rss_mb(), time.perf_counter()
            peak["mb"] = before
            out = f(*args, **kw)
            time.sleep(0.05)
            phases.append(
                {
                    "phase": name,
                    "before_mb": round(before, 1),
                    "peak_mb": round(peak["mb"], 1),
                    "after_mb": round(rss_mb(), 1),
                    "s": round(time.perf_counter() - t, 1),
                }
            )
            return out

        setattr(validate, name, timed)

    for name in PHASES:
        wrap(name)
    layout = Layout(root)
    layout.decode_cache.unlink(missing_ok=True)  # a first run: every file decoded
    start = rss_mb()
    validate.run(ValidateCfg(max_leaked_fraction=1.0, max_bad_fraction=1.0), layout)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "n": a.n,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "start_mb": round(start, 1),
        "peak_mb": max(ph["peak_mb"] for ph in phases),
        "phases": phases,
    }
    print(json.dumps(result, indent=1))
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
