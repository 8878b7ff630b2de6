"""What the `evaluate` stage costs on the default demo data (digits, 32 px, EfficientNet-Lite0).

Prepares the default data in a temp dir, saves an (untrained-head) Lite0 as model.pt - evaluation
cost does not depend on how well the model is trained - and times `stages.evaluate.run` with the
default switches, then with each optional part switched off in turn. Prints a table and writes
benchmarks/results/evaluate_<device>.json.

    .venv/bin/python -m benchmarks.evaluate_cost [--device cpu|cuda] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import device_name
from stages import augment, evaluate, ingest, validate
from vistune.models.backbones import create_backbone
from vistune.models.classifier import save_model
from vistune.config import load_params
from vistune.layout import Layout
from vistune.models.device_policy import resolve_device

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    p = load_params(REPO / "params.yaml")
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        lay = Layout(Path(tmp))
        ingest.run(p.data, lay)
        validate.run(p.validate, lay)
        augment.run(p.augment, lay)
        classes = json.loads((lay.prepared / "meta.json").read_text())["classes"]
        bb = create_backbone(p.train.model, len(classes), p.train.pretrained)
        save_model(lay.model, bb, bb.model.state_dict(), classes, p.augment.image_size, extra={})
        variants = {
            "default": p.evaluate,
            "no_robustness": dataclasses.replace(p.evaluate, robustness=False),
            "no_gradcam": dataclasses.replace(p.evaluate, gradcam=False),
            "no_latency": dataclasses.replace(p.evaluate, latency=False),
            "no_temperature": dataclasses.replace(p.evaluate, temperature_scaling=False),
            "metrics_only": dataclasses.replace(
                p.evaluate, robustness=False, gradcam=False, latency=False, temperature_scaling=False
            ),
        }
        rows = {}
        for name, cfg in variants.items():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                evaluate.run(cfg, str(device), lay)
                times.append(time.perf_counter() - t0)
            rows[name] = {"seconds_min": min(times), "seconds_all": times}
        n_test = json.loads(lay.eval_metrics.read_text())["test_n"]
    print(f"\nevaluate on {n_test} test images, {device_name(device)}")
    for name, r in rows.items():
        print(f"  {name:<16} {r['seconds_min']:6.2f} s")
    out = REPO / "benchmarks" / "results" / f"evaluate_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": device_name(device),
                "torch_threads": torch.get_num_threads(),
                "n_test": n_test,
                "variants": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
