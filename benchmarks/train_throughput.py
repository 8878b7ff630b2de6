"""Training throughput, three ways on the same device and model, in one run:

1. ceiling  - forward + backward + AdamW step on synthetic tensors already on the device
              (bf16 autocast, channels_last, fused AdamW on CUDA): no data path at all;
2. vistune  - `vistune.train.loop.fit` on prepared uint8 arrays with GPU-side augmentation
              (warm epoch's images/s from the history);
3. baseline - written like the PyTorch transfer-learning tutorial: ImageFolder + PIL transforms
              + DataLoader, fp32, SGD.

Imports only torch / torchvision / timm / numpy / PIL and the vistune core, so it runs on a GPU
box as is. Prints images/s, the ratios and peak GPU memory; writes JSON.

    python benchmarks/train_throughput.py --device cuda --model timm:resnet50 --image-size 224 \
        --batch-size 256 --images 4096 --out benchmarks/results/train_throughput_gpu.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import decode_items, device_name, folder_items, prepared, write_result  # noqa: E402
from vistune.models.backbones import create_backbone  # noqa: E402
from vistune.config import AugmentCfg, TrainCfg  # noqa: E402
from vistune.train.finetune import create_strategy  # noqa: E402
from vistune.train.loop import fit
from vistune.models.inference import resolve_device  # noqa: E402


def make_folder(root: Path, n: int, size: int, classes: int = 4) -> Path:
    """A synthetic ImageFolder of JPEGs at 1.25x the train size (so the baseline really decodes)."""
    rng = np.random.default_rng(0)
    side = int(size * 1.25)
    for i in range(n):
        c = i % classes
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        arr = np.clip(rng.normal(40 + 50 * c, 40, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(d / f"{i:05d}.jpg", quality=90)
    return root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def ceiling(a: argparse.Namespace, device: torch.device, classes: int) -> float:
    b = create_backbone(a.model, classes, a.pretrained)
    model = b.model.to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if a.compile:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    x = torch.randn(a.batch_size, 3, a.image_size, a.image_size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (a.batch_size,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    _sync(device)
    return a.steps * a.batch_size / (time.perf_counter() - t0)


def vistune_loop(a: argparse.Namespace, device: torch.device, folder: Path) -> tuple[float, int]:
    classes, items = folder_items(folder)
    train = decode_items(items, a.image_size)
    val = decode_items(items[:: max(1, len(items) // 16)], a.image_size)
    data = prepared(classes, a.image_size, train=train, val=val)
    tcfg = TrainCfg(model=a.model, pretrained=a.pretrained, strategy="full", epochs=2, batch_size=a.batch_size,
                    warmup_epochs=0.0, patience=0, device=str(device), compile=a.compile)
    acfg = AugmentCfg(image_size=a.image_size, hflip=0.5, rotation=10.0, salt_pepper=0.02)
    b = create_backbone(a.model, len(classes), a.pretrained)
    res = fit(b, create_strategy("full", tcfg), data, tcfg, acfg, progress=False)
    return res.history[-1]["images_per_s"], len(train)  # epoch 2: warm


def baseline(a: argparse.Namespace, device: torch.device, folder: Path) -> float:
    """The tutorial's way: PIL decode + transforms in DataLoader workers, fp32, SGD."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomResizedCrop(a.image_size), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = datasets.ImageFolder(str(folder), tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers,
                                         drop_last=True)
    model = create_backbone(a.model, len(ds.classes), a.pretrained).model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    seen, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 1:  # the first batch pays worker start-up
            _sync(device)
            t0 = time.perf_counter()
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 1:
            seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - t0) if t0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="timm:resnet10t")
    p.add_argument("--pretrained", default="none")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--images", type=int, default=256, help="size of the generated ImageFolder")
    p.add_argument("--data", type=Path, default=None, help="an existing ImageFolder (class folders) instead")
    p.add_argument("--steps", type=int, default=8, help="timed ceiling steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.data or make_folder(Path(tmp) / "folder", a.images, a.image_size)
        n_classes = len(folder_items(folder)[0])
        _peak_reset(device)
        ceil = ceiling(a, device, n_classes)
        mem_ceil = _peak(device)
        _peak_reset(device)
        ours, n = vistune_loop(a, device, folder)
        mem_ours = _peak(device)
        _peak_reset(device)
        base = baseline(a, device, folder)
        mem_base = _peak(device)
    result = {
        "date": date.today().isoformat(), "device": device_name(device), "torch": torch.__version__,
        "args": {k: str(v) for k, v in vars(a).items()}, "train_images": n,
        "images_per_s": {"ceiling": ceil, "vistune": ours, "baseline": base},
        "vistune_over_ceiling": ours / ceil, "vistune_over_baseline": ours / base,
        "peak_gpu_mem_gib": {"ceiling": mem_ceil, "vistune": mem_ours, "baseline": mem_base},
    }
    for k, v in result["images_per_s"].items():
        print(f"{k:9s} {v:10.1f} img/s")
    print(f"vistune / ceiling  {result['vistune_over_ceiling']:.3f}  (target >= 0.9 on GPU)")
    print(f"vistune / baseline {result['vistune_over_baseline']:.2f}  (target >= 3 on GPU)")
    if device.type == "cuda":
        print(f"peak GPU memory GiB {result['peak_gpu_mem_gib']}")
    write_result(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
