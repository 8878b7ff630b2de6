"""Cost against data size: generated JPEG sets through ingest -> validate -> augment -> one training epoch.

Each size runs the stages exactly as the pipeline does: `dvc repro --single-item <stage>` in a temp
git repo holding a copy of the working tree (the same copy `benchmarks/accuracy.py` makes), with
`data.source` pointing at a generated ImageFolder of small JPEGs (`--px`, default 96) in `--classes`
classes. While a stage runs, its process tree is sampled from /proc every `--poll` seconds: the
stage process (`python -m stages.<name>`) and the `dvc` process around it are told apart, so the
JSON has, per stage and size, the wall time of `dvc repro` (DVC hashing and caching included), the
stage process's own lifetime and its `--- <stage> done in` time, the remainder DVC spends (hashing
deps/outs, copying outs into the cache), images/s, and the peak anonymous memory (RssAnon: heap,
not the page cache or memory-mapped files, which the kernel can drop) and VmHWM (all resident pages,
mapped `.npy` pages included) of the stage and of DVC. validate prints its phase times
(decode/pHash facts, duplicate search, suite), recorded too. A PNG plots time and peak memory
against size.

    nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 1000,3000 --out benchmarks/results/scale_debug.json
    nice -n 10 .venv/bin/python benchmarks/scale.py          # 10k, 30k, 100k -> benchmarks/results/scale_cpu.json

Generated sets are kept under `--data-dir` (default: a temp dir) and reused when already complete.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import copy_tree, git_repo, _env  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STAGES = ("ingest", "validate", "augment", "train")
PARAMS = {
    "data": {"val_fraction": 0.1, "test_fraction": 0.1, "max_per_class": 0},
    # generated fields collide in pHash across classes at 60k: quarantined, never a stop (as validate_throughput)
    "validate": {"max_leaked_fraction": 1.0, "max_bad_fraction": 1.0},
    "augment": {"image_size": 16},
    "train": {
        "model": "timm:test_efficientnet",
        "pretrained": "none",
        "strategy": "full",
        "epochs": 1,
        "threads": 1,
        "batch_size": 128,
        "warmup_epochs": 0.0,
        "device": "cpu",
        "model_ema": False,
    },
}


def generate(root: Path, n: int, px: int, classes: int, seed: int = 0) -> Path:
    """`n` distinct JPEGs (`px` square) in `classes` class folders: random 4x4 colour fields upscaled
    (smooth, photo-like low frequencies, so pHashes differ) plus a class tint a tiny model can learn."""
    done = root / ".complete"
    if done.is_file() and done.read_text() == f"{n} {px} {classes} {seed}":
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    tints = rng.integers(0, 256, size=(classes, 3))
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
    for i in range(n):
        c = i % classes
        field = rng.integers(0, 256, size=(4, 4, 3)).astype(np.float32) * 0.6 + tints[c] * 0.4
        img = Image.fromarray(field.astype(np.uint8), "RGB").resize((px, px), Image.Resampling.BICUBIC)
        img.save(root / f"c{c}" / f"{i:07d}.jpg", quality=90)
    done.write_text(f"{n} {px} {classes} {seed}")
    return root


def _status(pid: int) -> dict[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return {k: int(v.split()[0]) for k, v in re.findall(r"^(RssAnon|VmHWM|VmRSS):\s+(.+)$", text, re.M)}


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _tree(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def run_sampled(cmd: list[str], cwd: Path, log: Path, stage: str, poll: float) -> dict:
    """Run `cmd`; sample its process tree: per role (stage / dvc) peak RssAnon and VmHWM (KiB), the
    stage process's first/last sighting (its lifetime)."""
    peaks = {"stage": {"RssAnon": 0, "VmHWM": 0}, "dvc": {"RssAnon": 0, "VmHWM": 0}}
    seen: dict[int, str] = {}
    stage_span = [None, None]
    t0 = time.perf_counter()
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=f, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            for pid in _tree(proc.pid):
                if pid not in seen:
                    line = _cmdline(pid)
                    seen[pid] = "stage" if f"stages.{stage}" in line else "dvc" if pid == proc.pid else "other"
                role = seen[pid]
                st = _status(pid) if role != "other" else None
                if st is None:
                    continue
                for k in ("RssAnon", "VmHWM"):
                    peaks[role][k] = max(peaks[role][k], st.get(k, 0))
                if role == "stage":
                    now = time.perf_counter() - t0
                    stage_span[0] = now if stage_span[0] is None else stage_span[0]
                    stage_span[1] = now
            time.sleep(poll)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(
            f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{log.read_text(errors='replace')[-3000:]}"
        )
    text = log.read_text(errors="replace")
    done = re.findall(rf"--- {stage} done in ([\d.]+)s", text)
    stage_s = (stage_span[1] - stage_span[0]) if stage_span[0] is not None else 0.0
    return {
        "wall_s": round(wall, 2),
        "stage_process_s": round(stage_s, 2),
        "stage_body_s": float(done[-1]) if done else None,
        "dvc_s": round(wall - stage_s, 2),
        "stage_peak_anon_mb": round(peaks["stage"]["RssAnon"] / 1024, 1),
        "stage_peak_hwm_mb": round(peaks["stage"]["VmHWM"] / 1024, 1),
        "dvc_peak_anon_mb": round(peaks["dvc"]["RssAnon"] / 1024, 1),
    }


def set_params(root: Path, source: Path) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in PARAMS.items():
        params[section].update(values)
    params["data"]["source"] = str(source)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def one_size(n: int, a: argparse.Namespace, data_dir: Path) -> dict:
    source = generate(data_dir / f"jpeg_{n}", n, a.px, a.classes)
    root = Path(tempfile.mkdtemp(prefix=f"vistune-scale-{n}-", dir=a.workdir))
    log = a.out.with_name(f"{a.out.stem}_{n}.log")
    log.write_text("")
    try:
        copy_tree(root)
        set_params(root, source)
        (root / "dvc.lock").unlink(missing_ok=True)
        git_repo(root)
        stages = {}
        for stage in STAGES:
            r = run_sampled(["dvc", "repro", "--single-item", stage], root, log, stage, a.poll)
            r["images_per_s"] = round(n / max(r["wall_s"], 1e-9), 1)
            stages[stage] = r
            print(
                f"  {n:>7} {stage:<9} {r['wall_s']:7.1f} s (stage {r['stage_process_s']:.1f} s, dvc "
                f"{r['dvc_s']:.1f} s)  peak anon {r['stage_peak_anon_mb']:.0f} MB (dvc {r['dvc_peak_anon_mb']:.0f} MB)",
                flush=True,
            )
        phases = re.findall(r"validate phases: (.+)", log.read_text(errors="replace"))
        summary = json.loads((root / "data/validated/summary.json").read_text())
        metrics = json.loads((root / "data/model/metrics.json").read_text())
        return {
            "n": n,
            "stages": stages,
            "validate_phases": phases[-1] if phases else None,
            "n_good": summary["n_good"],
            "n_quarantined": summary["n_quarantined"],
            "train_images_per_s": metrics.get("images_per_s"),
            "raw_mb": round(sum(f.stat().st_size for f in source.rglob("*.jpg")) / 2**20, 1),
        }
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    ns = [r["n"] for r in runs]
    fig, (ax_t, ax_p, ax_m) = plt.subplots(1, 3, figsize=(15, 4))
    for stage in STAGES:
        ax_t.plot(ns, [r["stages"][stage]["wall_s"] for r in runs], "o-", label=stage)
        ax_p.plot(ns, [1000 * r["stages"][stage]["wall_s"] / r["n"] for r in runs], "o-", label=stage)
        ax_m.plot(ns, [r["stages"][stage]["stage_peak_anon_mb"] for r in runs], "o-", label=stage)
    ax_t.plot(ns, [sum(r["stages"][s]["dvc_s"] for s in STAGES) for r in runs], "k--", label="DVC (all stages)")
    ax_t.set(xlabel="images", ylabel="wall time (s)", title="time per stage (dvc repro)", xscale="log", yscale="log")
    ax_p.set(xlabel="images", ylabel="ms per image", title="time per image (flat = linear)", xscale="log")
    ax_m.set(xlabel="images", ylabel="peak RssAnon (MB)", title="peak anonymous memory per stage", xscale="log")
    ax_p.set_ylim(bottom=0)
    ax_m.set_ylim(bottom=0)
    for ax in (ax_t, ax_p, ax_m):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,30000,100000", help="comma-separated image counts")
    p.add_argument("--px", type=int, default=96, help="generated image side")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--poll", type=float, default=0.1, help="seconds between /proc samples")
    p.add_argument("--data-dir", type=Path, default=None, help="keep generated sets here (reused when complete)")
    p.add_argument("--workdir", type=Path, default=None, help="parent of the temp repos")
    p.add_argument("--keep", action="store_true", help="keep the temp repos")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale_cpu.json")
    a = p.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    data_dir = a.data_dir or Path(tempfile.mkdtemp(prefix="vistune-scale-data-"))
    sizes = [int(s) for s in a.sizes.split(",")]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores, {os.uname().machine}",
        "px": a.px,
        "classes": a.classes,
        "params": PARAMS,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "runs": [],
    }
    try:
        for n in sizes:
            result["runs"].append(one_size(n, a, data_dir))
            result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            a.out.write_text(json.dumps(result, indent=2) + "\n")  # each size kept as soon as it is measured
    finally:
        if a.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    first, last = result["runs"][0], result["runs"][-1]
    scale = last["n"] / first["n"]
    result["ratios"] = {
        s: {
            "time_per_image": round(last["stages"][s]["wall_s"] / first["stages"][s]["wall_s"] / scale, 3),
            "peak_anon": round(
                last["stages"][s]["stage_peak_anon_mb"] / max(first["stages"][s]["stage_peak_anon_mb"], 1e-9), 3
            ),
        }
        for s in STAGES
    }
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, a.out.with_suffix(".png"))
    print(json.dumps(result["ratios"], indent=1))
    print(f"-> {a.out}, {a.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
