"""What DVC pays per file: one file per image (data/raw today) against the same bytes in tar shards.

For each layout a fresh git + DVC repo gets a copy of the source folder (not timed), then
`dvc add data/raw` (hash every file, copy it into the cache) and a second `dvc status` (the state
database answers from inode/mtime, as each later stage's dependency check does) are timed. Shards:
`--shard` images per uncompressed tar (packing is timed separately). The issue's other
alternative, the source as an external dependency instead of a copy, skips the cache copy but DVC
still hashes it file by file: the `status` row is that cost once the hashes are known.

    nice -n 10 .venv/bin/python benchmarks/dvc_layout.py --source /tmp/scale-data/jpeg_30000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import _env  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=_env(), check=True, capture_output=True)
    return round(time.perf_counter() - t0, 2)


def pack(source: Path, dest: Path, per_shard: int) -> int:
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
    dest.mkdir(parents=True)
    for k in range(0, len(files), per_shard):
        with tarfile.open(dest / f"shard-{k // per_shard:05d}.tar", "w") as tar:
            for f in files[k : k + per_shard]:
                tar.add(f, arcname=str(f.relative_to(source)))
    return len(files)


def measure(source: Path, layout: str, per_shard: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"vistune-dvc-{layout}-"))
    try:
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
            subprocess.run(cmd, cwd=root, env=_env(), check=True, capture_output=True)
        (root / "data").mkdir()
        t0 = time.perf_counter()
        if layout == "files":
            shutil.copytree(source, root / "data" / "raw", ignore=shutil.ignore_patterns(".*"))
            n_objects = sum(1 for _ in (root / "data" / "raw").rglob("*.jpg"))
        else:
            n_objects = -(-pack(source, root / "data" / "raw", per_shard) // per_shard)
        prep = round(time.perf_counter() - t0, 2)
        return {
            "layout": layout,
            "objects": n_objects,
            "prepare_s": prep,
            "dvc_add_s": timed(["dvc", "add", "-q", "data/raw"], root),
            "dvc_status_s": timed(["dvc", "status", "-q"], root),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, required=True, help="an ImageFolder (e.g. one benchmarks/scale.py generated)")
    p.add_argument("--shard", type=int, default=1000)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dvc_layout.json")
    a = p.parse_args(argv)
    rows = [measure(a.source, layout, a.shard) for layout in ("files", "shards")]
    out = {
        "source": str(a.source),
        "images": sum(1 for _ in a.source.rglob("*.jpg")),
        "per_shard": a.shard,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(r)
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
