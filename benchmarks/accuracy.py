"""Fine-tune on hymenoptera (the PyTorch transfer-learning tutorial's ants/bees; its ResNet-18
reaches about 94% val) through the vistune core: decode once -> fit -> held-out accuracy.

The folder's `train/` trains; its `val/` is split in two halves by a fixed seed: one picks the
best epoch, the other is the untouched test set the accuracy is reported on.

    python benchmarks/accuracy.py --device cuda --model timm:tf_efficientnet_lite0 --image-size 224 \
        --epochs 8 --batch-size 64 --out benchmarks/results/accuracy_gpu.json    # target >= 0.96
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import decode_items, device_name, folder_items, prepared, write_result  # noqa: E402
from vistune.models.backbones import create_backbone  # noqa: E402
from vistune.config import AugmentCfg, TrainCfg  # noqa: E402
from vistune.train.finetune import create_strategy  # noqa: E402
from vistune.train.loop import fit, set_seed
from vistune.models.inference import predict_logits, resolve_device  # noqa: E402

HYMENOPTERA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "hymenoptera"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=HYMENOPTERA)
    p.add_argument("--model", default="timm:tf_efficientnet_lite0")
    p.add_argument("--pretrained", default="imagenet")
    p.add_argument("--strategy", default="full")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.json"))
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    set_seed(0)
    classes, train_items = folder_items(a.data / "train")
    _, val_items = folder_items(a.data / "val")
    perm = np.random.default_rng(0).permutation(len(val_items))
    half = len(perm) // 2
    data = prepared(
        classes, a.image_size, train=decode_items(train_items, a.image_size),
        val=decode_items([val_items[i] for i in perm[:half]], a.image_size),
        test=decode_items([val_items[i] for i in perm[half:]], a.image_size),
    )
    t_decode = time.perf_counter() - t0
    tcfg = TrainCfg(model=a.model, pretrained=a.pretrained, strategy=a.strategy, epochs=a.epochs,
                    batch_size=a.batch_size, lr=a.lr, warmup_epochs=1.0, patience=0, device=a.device,
                    model_ema=False)
    acfg = AugmentCfg(image_size=a.image_size, scale=(0.5, 1.0), hflip=0.5, rotation=10.0, salt_pepper=0.0,
                      brightness=0.2, contrast=0.2, saturation=0.2)
    device = resolve_device(a.device)
    b = create_backbone(a.model, len(classes), a.pretrained)
    res = fit(b, create_strategy(a.strategy, tcfg), data, tcfg, acfg, progress=True)
    b.model.load_state_dict(res.state_dict)
    test_x, test_y = data.tensors("test")
    test_acc = float((predict_logits(b, test_x, device).argmax(1) == test_y).float().mean())
    total = time.perf_counter() - t0
    result = {
        "date": date.today().isoformat(), "device": device_name(device), "args": {k: str(v) for k, v in vars(a).items()},
        "n": {s: len(v) for s, v in data.splits.items()}, "best_val_accuracy": res.best_val_accuracy,
        "best_epoch": res.best_epoch, "test_accuracy": test_acc, "decode_s": t_decode, "total_s": total,
        "images_per_s": [r["images_per_s"] for r in res.history],
    }
    print(f"val (epoch pick) {res.best_val_accuracy:.4f}  test (held out) {test_acc:.4f}  "
          f"total {total:.1f}s on {result['device']}  (target >= 0.96 on GPU)")
    write_result(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
