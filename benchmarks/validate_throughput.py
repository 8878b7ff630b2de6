"""How fast `validate` reads a folder of images: cold (every file decoded) and warm (decode cache hit).

Generates N small synthetic JPEG/PNG images in a temp ImageFolder (train/val/test x 10 classes),
then times `build_manifest` (read + sha256 + full decode + pHash, threaded) and the whole stage
(`stages.validate.run`: manifest, duplicate search, GX suite, Data Docs, outputs).

    python benchmarks/validate_throughput.py --n 10000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vistune.config import ValidateCfg  # noqa: E402
from vistune.layout import Layout  # noqa: E402
from vistune.data.manifest import build_manifest  # noqa: E402


def make_images(raw: Path, n: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        split = ("train", "train", "train", "val", "test")[i % 5]
        d = raw / split / f"class_{(i // 5) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        # smooth random images: distinct pHashes, realistic compression
        small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR)
        if i % 2:
            img.save(d / f"{i:06d}.jpg", quality=90)
        else:
            img.save(d / f"{i:06d}.png")


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="number of images (default 10000)")
    ap.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    ap.add_argument("--workers", type=int, default=ValidateCfg().workers)
    ap.add_argument("--out", default="benchmarks/results/validate_throughput.json")
    ap.add_argument("--skip-stage", action="store_true", help="time build_manifest only (no GX)")
    args = ap.parse_args(argv)

    from stages import validate

    with tempfile.TemporaryDirectory(prefix="vistune-bench-") as tmp:
        lay = Layout(Path(tmp))
        t_gen, _ = timed(lambda: make_images(lay.raw, args.n, args.size))
        cache = Path(tmp) / "bench_cache.json"
        kw = dict(max_pixels=ValidateCfg().max_pixels, workers=args.workers)
        t_cold, m = timed(lambda: build_manifest(lay.raw, cache_path=cache, **kw))
        t_warm, _ = timed(lambda: build_manifest(lay.raw, cache_path=cache, **kw))
        t_serial, _ = timed(lambda: build_manifest(lay.raw, max_pixels=kw["max_pixels"], workers=1))
        assert m.decodable.all(), "synthetic images must all decode"
        result = {
            "n_images": args.n,
            "image_size": args.size,
            "workers": args.workers,
            "cpu_count": os.cpu_count(),
            "generate_s": round(t_gen, 2),
            "manifest_cold_s": round(t_cold, 3),
            "manifest_cold_images_per_s": round(args.n / t_cold, 1),
            "manifest_warm_s": round(t_warm, 3),
            "manifest_warm_images_per_s": round(args.n / t_warm, 1),
            "manifest_1_thread_no_cache_images_per_s": round(args.n / t_serial, 1),
        }
        if not args.skip_stage:
            cfg = ValidateCfg(
                workers=args.workers, min_images_per_class=1, max_leaked_fraction=1.0, max_bad_fraction=1.0
            )
            validate.run(cfg, lay)  # first run pays GX import and decodes (cold cache)
            lay.decode_cache.unlink()
            t_stage_cold, _ = timed(lambda: validate.run(cfg, lay))
            t_stage_warm, _ = timed(lambda: validate.run(cfg, lay))
            result.update(
                stage_cold_s=round(t_stage_cold, 3),
                stage_cold_images_per_s=round(args.n / t_stage_cold, 1),
                stage_warm_s=round(t_stage_warm, 3),
                stage_warm_images_per_s=round(args.n / t_stage_warm, 1),
            )
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
