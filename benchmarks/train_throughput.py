"""Training throughput four ways, same device and model, in one process:

1. ceiling            - forward + backward + AdamW on one random batch already on the device, with
                        vistune's precision (autocast rule) and memory format (channels_last): no data path;
2. vistune            - `vistune.train.loop.fit` on decoded uint8 arrays (decode once, timed apart) with
                        on-device augmentation; images/s of the warm second epoch;
3. tutorial           - the PyTorch transfer-learning tutorial's loop as it is: ImageFolder + PIL transforms
                        + DataLoader (batch 4, 4 workers), SGD, fp32, NCHW;
4. same_recipe_loader - ImageFolder + DataLoader (PIL decode + crop/flip per epoch) but vistune's AdamW,
                        precision, memory format and batch: the data path's cost apart from the recipe's.

Batch size and CPU thread count come from a short ceiling measurement unless given; the ceiling is
measured again at the end (`ceiling_again_img_s`) so drift from other load on the machine shows. Imports only
torch / torchvision / timm / numpy / PIL and the vistune core, so it runs on a GPU box as is.

    python benchmarks/train_throughput.py --data ../shared/datasets/hymenoptera/train \
        --model timm:tf_efficientnet_lite0 --pretrained imagenet --image-size 224
    python benchmarks/train_throughput.py --device cuda --model timm:resnet50 --pretrained none \
        --data ../shared/datasets/hymenoptera/train --repeat 16 --batch-size 256 --out ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import decode_items, device_name, folder_items, prepared, write_result  # noqa: E402
from vistune.config import AugmentCfg, TrainCfg  # noqa: E402
from vistune.data.prepared import SplitArrays  # noqa: E402
from vistune.models.backbones import create_backbone  # noqa: E402
from vistune.models.device_policy import amp_dtype, autocast, place, resolve_device, setup_device  # noqa: E402
from vistune.train.finetune import create_strategy  # noqa: E402
from vistune.train.loop import fit  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def _adamw(params, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))


def ceiling(a: argparse.Namespace, device: torch.device, classes: int, batch: int, steps: int, warmup: int) -> float:
    """The bare step on one random batch: what the model, precision and memory format allow."""
    b = create_backbone(a.model, classes, a.pretrained)
    net = place(b, device).train()
    net = torch.compile(net) if a.compile else net
    opt = _adamw(b.model.parameters(), device)
    x = torch.rand(batch, 3, a.image_size, a.image_size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype(device, True) == torch.float16)

    def step() -> None:
        with autocast(device, True):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def choose(a: argparse.Namespace, device: torch.device, classes: int) -> tuple[int, int, dict]:
    """(batch, threads) with the best short ceiling; the measurements behind the choice."""
    if a.batch_size and (a.threads or device.type == "cuda"):
        return a.batch_size, a.threads or torch.get_num_threads(), {}
    cores = os.cpu_count() or 1
    tried: dict[str, float] = {}
    batches = [a.batch_size] if a.batch_size else a.try_batches
    torch.set_num_threads(cores)
    for bs in batches:
        tried[f"b{bs}_t{cores}"] = ceiling(a, device, classes, bs, steps=a.try_steps, warmup=1)
    best_bs = int(max(tried, key=tried.get).split("_")[0][1:])
    for t in sorted({t for t in (1, cores // 2) if 0 < t < cores}):
        torch.set_num_threads(t)
        tried[f"b{best_bs}_t{t}"] = ceiling(a, device, classes, best_bs, steps=a.try_steps, warmup=1)
    best = max(tried, key=tried.get)
    return int(best.split("_")[0][1:]), int(best.split("_t")[1]), tried


def vistune_fit(
    a: argparse.Namespace,
    device: torch.device,
    classes: list[str],
    train: SplitArrays,
    val: SplitArrays,
    batch: int,
    threads: int,
) -> float:
    tcfg = TrainCfg(
        model=a.model,
        pretrained=a.pretrained,
        strategy="full",
        epochs=2,
        batch_size=batch,
        warmup_epochs=0.0,
        patience=0,
        device=str(device),
        compile=a.compile,
        threads=threads,
    )
    acfg = AugmentCfg(image_size=a.image_size, hflip=0.5, salt_pepper=0.0)
    b = create_backbone(a.model, len(classes), a.pretrained)
    res = fit(
        b,
        create_strategy("full", tcfg),
        prepared(classes, a.image_size, train=train, val=val),
        tcfg,
        acfg,
        progress=False,
    )
    return res.history[-1]["images_per_s"]  # epoch 2: warm


def _loader(a: argparse.Namespace, transform, batch: int, workers: int):
    from torchvision import datasets

    ds = datasets.ImageFolder(str(a.data), transform)
    if a.repeat > 1:
        ds = torch.utils.data.ConcatDataset([ds] * a.repeat)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device_is_cuda(a),
        persistent_workers=False,
    )


def device_is_cuda(a: argparse.Namespace) -> bool:
    return resolve_device(a.device).type == "cuda"


def _timed_loop(loader, step, device: torch.device, max_steps: int) -> float:
    """images/s after the first batch (which pays the worker start-up), over at most `max_steps`."""
    seen, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 1:
            _sync(device)
            t0 = time.perf_counter()
        step(x, y)
        if i >= 1:
            seen += len(y)
        if i >= max_steps:
            break
    _sync(device)
    return seen / (time.perf_counter() - t0) if t0 else float("nan")


def tutorial(a: argparse.Namespace, device: torch.device, classes: int, batch: int) -> float:
    """pytorch.org/tutorials/beginner/transfer_learning_tutorial.html, its training loop unchanged."""
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(a.image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    model = create_backbone(a.model, classes, a.pretrained).model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return _timed_loop(_loader(a, tf, 4, 4), step, device, a.loader_steps * max(1, batch // 4))  # as many images


def same_recipe_loader(a: argparse.Namespace, device: torch.device, classes: int, batch: int) -> float:
    """The DataLoader data path with vistune's recipe: uint8 tensors, AdamW, autocast, channels_last."""
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(a.image_size, scale=(0.7, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.PILToTensor(),
        ]
    )
    b = create_backbone(a.model, classes, a.pretrained)
    net = place(b, device).train()
    opt = _adamw(b.model.parameters(), device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype(device, True) == torch.float16)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, True):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return _timed_loop(_loader(a, tf, batch, a.workers), step, device, a.loader_steps)


def _decode(a: argparse.Namespace) -> tuple[list[str], SplitArrays, SplitArrays, float, int]:
    classes, items = folder_items(a.data)
    if a.max_images:
        items = [items[i] for i in np.random.default_rng(0).permutation(len(items))[: a.max_images]]
    t0 = time.perf_counter()
    train = decode_items(items, a.image_size)
    decode_s = time.perf_counter() - t0
    n_files = len(items)
    if a.repeat > 1:
        train = SplitArrays(np.concatenate([train.images] * a.repeat), np.concatenate([train.labels] * a.repeat))
    val = SplitArrays(train.images[: a.val_images], train.labels[: a.val_images])
    return classes, train, val, decode_s, n_files


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="timm:tf_efficientnet_lite0")
    p.add_argument("--pretrained", default="imagenet")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--data", type=Path, default=Path("../shared/datasets/hymenoptera/train"), help="an ImageFolder")
    p.add_argument("--repeat", type=int, default=1, help="tile the train set K times (fast devices)")
    p.add_argument("--max-images", type=int, default=0, help="a random subset of the folder for fit (slow devices)")
    p.add_argument("--try-batches", type=int, nargs="+", default=[16, 32, 64], help="batch sizes the choice tries")
    p.add_argument("--try-steps", type=int, default=2, help="timed steps per tried (batch, threads)")
    p.add_argument("--val-images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=0, help="0 = choose from a short ceiling measurement")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = choose from a short measurement")
    p.add_argument("--steps", type=int, default=6, help="timed ceiling steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--loader-steps", type=int, default=6, help="timed DataLoader batches")
    p.add_argument("--workers", type=int, default=2, help="same-recipe DataLoader workers")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. 'shared with other jobs')")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    device = resolve_device(a.device)
    setup_device(device)
    classes, train, val, decode_s, n_files = _decode(a)
    batch, threads, tried = choose(a, device, len(classes))
    torch.set_num_threads(threads)
    figures: dict[str, float] = {}
    memory: dict[str, float | None] = {}
    for name, fn in (
        ("ceiling", lambda: ceiling(a, device, len(classes), batch, a.steps, a.warmup)),
        ("vistune", lambda: vistune_fit(a, device, classes, train, val, batch, threads)),
        ("same_recipe_loader", lambda: same_recipe_loader(a, device, len(classes), batch)),
        ("tutorial", lambda: tutorial(a, device, len(classes), batch)),
        ("ceiling_again", lambda: ceiling(a, device, len(classes), batch, a.steps, a.warmup)),  # load drift check
    ):
        _peak_reset(device)
        figures[name] = fn()
        memory[name] = _peak(device)
        print(f"{name:19s} {figures[name]:9.1f} img/s", flush=True)
    result = {
        "date": date.today().isoformat(),
        "device": device_name(device),
        "torch": torch.__version__,
        "note": a.note,
        "model": a.model,
        "image_size": a.image_size,
        "batch_size": batch,
        "threads": threads,
        "precision": str(amp_dtype(device, True) or torch.float32).replace("torch.", ""),
        "memory_format": "channels_last",
        "choice_img_s": tried,
        "train_images": len(train),
        "files": n_files,
        "decode_s": decode_s,
        "decode_img_s": n_files / max(decode_s, 1e-9),
        **{f"{k}_img_s": v for k, v in figures.items()},
        "vistune_over_ceiling": figures["vistune"] / figures["ceiling"],
        "vistune_over_ceiling_mean": figures["vistune"] / ((figures["ceiling"] + figures["ceiling_again"]) / 2),
        "vistune_over_tutorial": figures["vistune"] / figures["tutorial"],
        "vistune_over_same_recipe_loader": figures["vistune"] / figures["same_recipe_loader"],
        "peak_gpu_mem_gib": memory,
        "args": {k: str(v) for k, v in vars(a).items()},
    }
    print(
        f"decode once           {decode_s:6.1f} s for {n_files} files ({result['decode_img_s']:.0f} img/s), outside fit"
    )
    print(f"batch {batch}, threads {threads}, {result['precision']}, channels_last")
    print(
        f"vistune / ceiling     {result['vistune_over_ceiling']:.3f}  (target >= 0.9; "
        f"{result['vistune_over_ceiling_mean']:.3f} against the mean of both ceiling runs)"
    )
    print(f"vistune / tutorial    {result['vistune_over_tutorial']:.2f}")
    print(f"vistune / same-recipe loader {result['vistune_over_same_recipe_loader']:.2f}")
    write_result(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
