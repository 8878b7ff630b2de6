"""Near-duplicate search cost: `pairs_within` (banded, multi-index) against the all-pairs scan.

Uniform random 63-bit hashes (pHash's first bit is constant), radius 4 (validate's default); both
must return the same pairs. The all-pairs scan is O(N^2) and needs a chunk x N uint64 buffer.

    nice -n 10 .venv/bin/python benchmarks/phash_pairs.py --sizes 10000,30000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vistune.data import phash  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,30000,100000")
    p.add_argument("--radius", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "phash_pairs_cpu.json")
    a = p.parse_args(argv)
    rng = np.random.default_rng(1)
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        h = rng.integers(0, 2**63, n, dtype=np.uint64)
        t0 = time.perf_counter()
        banded = phash.pairs_within(h, a.radius)
        t1 = time.perf_counter()
        brute = phash._brute_force(h, a.radius, 1024)
        t2 = time.perf_counter()
        assert banded == brute, n
        rows.append({"n": n, "banded_s": round(t1 - t0, 2), "brute_s": round(t2 - t1, 2), "pairs": len(banded)})
        print(rows[-1], flush=True)
    a.out.write_text(
        json.dumps({"radius": a.radius, "load_average": [round(x, 2) for x in os.getloadavg()], "rows": rows}, indent=2)
        + "\n"
    )
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
