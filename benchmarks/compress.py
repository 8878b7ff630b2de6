"""The compress stage on a trained model: per-variant accuracy, size, latency, gate (and its recipe).

    python benchmarks/compress.py --root /tmp/vt_demo/root            # a trained workspace (data/model, data/prepared)
    python benchmarks/compress.py --root /tmp/x --train               # first ingest -> validate -> augment -> train there
    python benchmarks/compress.py --root R --set distill_epochs=30 --set student=timm:mobilenetv3_large_100

`--params` (default params.yaml) gives every section; `--set KEY=VALUE` overrides `compress.KEY`
(YAML values), `--variants` picks the variants. Prints the stage's table and writes
benchmarks/results/compress_<name>.json with the rows, the settings, the date and the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_result  # noqa: E402
from vistune.config import load_params, parse_params, to_dict  # noqa: E402
from vistune.layout import Layout  # noqa: E402


def _train(params, layout: Layout) -> float:
    from stages import augment, ingest, train, validate

    t0 = time.perf_counter()
    ingest.run(params.data, layout)
    validate.run(params.validate, layout)
    augment.run(params.augment, layout)
    train.run(params.train, params.augment, layout, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--train", action="store_true", help="build data/ and train the model under --root first")
    ap.add_argument("--variants", default="onnx,onnx_int8,onnx_int8_dynamic,pruned,distilled")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override compress.KEY")
    ap.add_argument("--name", default="digits")
    args = ap.parse_args()
    raw = to_dict(load_params(args.params))
    raw["compress"].update({"enabled": True, "variants": args.variants.split(",")})
    for item in args.set:
        key, _, value = item.partition("=")
        raw["compress"][key] = yaml.safe_load(value)
    params = parse_params(raw)
    layout = Layout(args.root)
    train_s = _train(params, layout) if args.train else None
    from stages import compress

    t0 = time.perf_counter()
    table = compress.run(params, layout)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "train_s": train_s,
        "compress_s": time.perf_counter() - t0,
        "data": params.data.source,
        "model": params.train.model,
        "image_size": params.augment.image_size,
        "compress": dataclasses.asdict(params.compress),
        "rows": table.to_dict("records"),
    }
    write_result(Path(__file__).parent / "results" / f"compress_{args.name}.json", result)


if __name__ == "__main__":
    main()
