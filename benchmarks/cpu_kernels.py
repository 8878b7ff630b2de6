"""Speed of the portable CPU kernels (`runtime.cpu_kernels: avx2`) against the host's own (`native`).

Each round starts two fresh processes, one per level (torch reads the cap only at start-up), in
alternating order, so load from elsewhere on the machine falls on both; the figure is the median over
rounds of each level's images/s and the median of the per-round ratio. A process times, on the offline
ImageNet Lite0 at the demo's and the photo recipe's input size, a full fine-tuning step (forward +
backward + AdamW, channels_last, fp32 as on CPU) and an evaluation forward pass (inference mode).
Torch/timm and the vistune core only, as every benchmark here.

    python benchmarks/cpu_kernels.py --rounds 3 --out benchmarks/results/cpu_kernels.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vistune.runtime import kernel_env  # noqa: E402

LEVELS = ("avx2", "native")


def cpu_facts() -> dict[str, str]:
    """Model name and the vector extensions /proc/cpuinfo lists (x86), to say which CPU 'native' is."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    lines = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in text.splitlines() if ":" in ln)}
    flags = lines.get("flags", "").split()
    return {
        "model": lines.get("model name", platform.processor()),
        "machine": platform.machine(),
        "vector_flags": " ".join(f for f in flags if f.startswith(("avx", "fma", "amx"))),
        "cores": str(os.cpu_count()),
    }


def measure(size: int, batch: int, steps: int, threads: int) -> dict[str, float]:
    """Images/s of `steps` timed train steps and eval batches (after two warm-up steps each)."""
    import torch

    from vistune.models.backbones import create_backbone

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = create_backbone("timm:tf_efficientnet_lite0", num_classes=10, pretrained="imagenet").model
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    def eval_step() -> None:
        with torch.inference_mode():
            net(x)

    out = {"cpu_kernels_active": str(torch.backends.cpu.get_cpu_capability())}
    for name, fn, mode in (("train", train_step, net.train), ("eval", eval_step, net.eval)):
        mode()
        for _ in range(2):
            fn()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        out[f"{name}_img_s"] = batch * steps / (time.perf_counter() - t0)
    return out


def run_child(level: str, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    env.update(kernel_env(level))
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_kernels.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.size, args.batch, args.steps, args.threads)))
        return
    rows: dict[str, list[dict]] = {lv: [] for lv in LEVELS}
    for r in range(args.rounds):
        for level in LEVELS if r % 2 == 0 else LEVELS[::-1]:
            rows[level].append(run_child(level, args))
            print(f"round {r + 1} {level:6s} {rows[level][-1]}", flush=True)
    summary = {}
    for kind in ("train", "eval"):
        ratios = [a[f"{kind}_img_s"] / n[f"{kind}_img_s"] for a, n in zip(rows["avx2"], rows["native"])]
        summary[kind] = {lv: statistics.median(x[f"{kind}_img_s"] for x in rows[lv]) for lv in LEVELS}
        summary[kind]["avx2_over_native"] = statistics.median(ratios)
        print(
            f"{kind:5s}  avx2 {summary[kind]['avx2']:7.1f} img/s  native {summary[kind]['native']:7.1f} img/s  "
            f"avx2/native {summary[kind]['avx2_over_native']:.3f} (median of {len(ratios)} paired rounds)"
        )
    result = {
        "date": date.today().isoformat(),
        "cpu": cpu_facts(),
        "load_avg": os.getloadavg(),
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "threads": args.threads,
        "rounds": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
