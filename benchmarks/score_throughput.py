"""How fast `vistune score` scores a folder of small images on this machine, end to end.

Generates N small synthetic PNG images (10 classes of smooth random patterns) plus a reference
set, registers a real model (EfficientNet-Lite0 with its offline ImageNet weights and a fresh
10-class head; the speed does not depend on the head's training) in a temp MLflow store as
`champion`, with the training manifest and drift reference a pipeline run logs, then times
`app.scoring.score` (validation of every file, predictions, drift, outputs) on the folder.

    python benchmarks/score_throughput.py --n 10000 --image-size 32 --device cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

for k, v in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
}.items():
    os.environ.setdefault(k, v)
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._common import device_name, write_result  # noqa: E402
from vistune.config import load_params  # noqa: E402

CLASSES = [f"class_{i}" for i in range(10)]


def make_images(folder: Path, n: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = folder / CLASSES[i % 10]
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR).save(d / f"{i:06d}.png")


def register_model(tmp: Path, params, size: int, reference: Path):
    """A real vistune model registered as champion, with its run's manifest and drift reference."""
    import pandas as pd

    from integrations import registry, tracking
    from vistune.data.manifest import build_manifest
    from vistune.evaluate import drift
    from vistune.models.backbones import create_backbone
    from vistune.models.batch_predict import _decode_batch
    from vistune.models.classifier import save_model

    backbone = create_backbone(params.train.model, len(CLASSES), pretrained="imagenet")
    model_file = tmp / "model.pt"
    save_model(model_file, backbone, backbone.model.state_dict(), CLASSES, size, {})
    files = [(p, "train", p.parent.name) for p in sorted(reference.rglob("*.png"))]
    manifest = build_manifest(reference, params.validate.max_pixels, files=files)
    (tmp / "validate").mkdir()
    manifest.to_csv(tmp / "validate" / "manifest.csv", index=False)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        images = _decode_batch(pool, [f for f, _, _ in files], size)
    drift.save_reference(
        tmp / "evaluate" / "drift_reference.npy", drift.reference_features(backbone, images, torch.device("cpu"))
    )
    tracker = tracking.Tracker.open(params.register, tmp)
    rec = tracking.RunRecord(
        name="score-benchmark",
        params={"benchmark": {"n_reference": len(files)}},
        metrics={},
        history=pd.DataFrame({"epoch": []}),
        manifest=manifest,
        manifest_uri=(tmp / "validate").as_uri(),
        artifacts=[
            (tmp / "validate" / "manifest.csv", "validate"),
            (tmp / "evaluate" / "drift_reference.npy", "evaluate"),
        ],
        model_file=model_file,
        classes=CLASSES,
        example_image=files[0][0].read_bytes(),
    )
    _, version = tracker.log_run(rec)
    registry.promote(tracker.client, params.register.model_name, version, tracker.lock, reason="benchmark")
    return version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--n-reference", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "score_throughput.json")
    args = ap.parse_args()

    from app import scoring

    with tempfile.TemporaryDirectory(prefix="vistune-score-bench-") as t:
        tmp = Path(t)
        base = load_params(REPO / "params.yaml")
        params = dataclasses.replace(
            base,
            register=dataclasses.replace(
                base.register, tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", artifact_root=str(tmp / "artifacts")
            ),
            train=dataclasses.replace(base.train, device=args.device),
        )
        t0 = time.perf_counter()
        make_images(tmp / "new", args.n, args.image_size, seed=1)
        make_images(tmp / "reference", args.n_reference, args.image_size, seed=0)
        t_gen = time.perf_counter() - t0
        version = register_model(tmp, params, args.image_size, tmp / "reference")
        t0 = time.perf_counter()
        result = scoring.score(tmp / "new", params, tmp, tmp / "out", progress=True)
        wall = time.perf_counter() - t0
    out = {
        "n_images": args.n,
        "n_scored": len(result.predictions),
        "n_quarantined": len(result.quarantine),
        "image_size": args.image_size,
        "model": params.train.model,
        "model_version": version,
        "device": device_name(torch.device(args.device)),
        "batch_size": params.evaluate.batch_size,
        "wall_s": round(wall, 2),
        "images_per_s": round(len(result.predictions) / wall, 1),
        "seconds": result.summary["seconds"],  # load_model / validate (decode + GX suite) / predict / drift
        "predict_images_per_s": round(len(result.predictions) / result.summary["seconds"]["predict"], 1),
        "drift_status": result.drift.status,
        "drift_score": result.drift.drift_score,
        "generate_s": round(t_gen, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(
        f"scored {out['n_scored']} images ({args.image_size}px) in {out['wall_s']} s: "
        f"{out['images_per_s']} images/s end to end, {out['predict_images_per_s']} images/s predicting, "
        f"on {out['device']} (load avg {out['load_avg_1m']}); phases {out['seconds']}; "
        f"drift {out['drift_status']} score {out['drift_score']}"
    )
    write_result(args.out, out)


if __name__ == "__main__":
    main()
