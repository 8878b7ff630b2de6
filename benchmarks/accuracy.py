"""Accuracy a user can reproduce: `vistune init <photos>` then `dvc repro`, exactly as a user runs them.

The working tree as it is now (tracked and untracked, not ignored; no tests, benchmarks, data or
dvc.lock) is copied into a temp git repo and committed; there `vistune init` writes the recipe
into params.yaml and a real `dvc repro` runs every stage (ingest -> validate -> augment -> train ->
evaluate -> compress -> register). The JSON holds the held-out test accuracy from
`data/eval/metrics.json`, the whole-pipeline wall time, each stage's time, the recipe used and the
machine's load average (other jobs on the same cores slow every figure down).

    .venv/bin/python benchmarks/accuracy.py --out benchmarks/results/accuracy_cpu.json   # hymenoptera
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HYMENOPTERA = REPO.parent / "shared" / "datasets" / "hymenoptera"
SKIP = ("tests/", "benchmarks/", "data/raw", "data/prepared")
RECIPE_KEYS = {
    "data": ["source"],
    "augment": None,
    "train": [
        "model",
        "pretrained",
        "head_init",
        "strategy",
        "epochs",
        "batch_size",
        "lr",
        "warmup_epochs",
        "patience",
        "keep",
        "device",
    ],
    "validate": ["allowed_formats"],
}
ENV = {
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def copy_tree(dest: Path) -> list[str]:
    """The source files of the working tree (what `git ls-files -co --exclude-standard` lists) into `dest`;
    returns the files that differ from HEAD (other people's work in progress is measured too)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = REPO / rel
        if rel.startswith(SKIP) or rel == "dvc.lock" or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    status = subprocess.run(["git", "status", "--short"], cwd=REPO, capture_output=True, text=True).stdout
    return [line[3:] for line in status.splitlines() if line.strip()]


def _env() -> dict:
    env = dict(os.environ, **ENV)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run(cmd: list[str], cwd: Path, log: Path) -> float:
    """Run `cmd`, tee its output into `log`, fail loudly with the tail; returns wall seconds."""
    t0 = time.perf_counter()
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return time.perf_counter() - t0


def git_repo(root: Path) -> None:
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for cmd in (["git", "init", "-q"], git + ["add", "-A"], git + ["commit", "-qm", "working tree for accuracy.py"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)


def stage_times(log_text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"--- (\w+) done in ([\d.]+)s", log_text)}


def recipe(root: Path) -> dict:
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    return {s: {k: v for k, v in params[s].items() if keys is None or k in keys} for s, keys in RECIPE_KEYS.items()}


def results(root: Path) -> dict:
    read = lambda rel: json.loads((root / rel).read_text())  # noqa: E731
    ev, model, summary = (
        read("data/eval/metrics.json"),
        read("data/model/metrics.json"),
        read("data/validated/summary.json"),
    )
    with open(root / "data/model/history.csv", newline="") as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    reg = root / "data/registry/registration.json"
    return {
        "test_accuracy": ev.get("test_accuracy"),
        "test_macro_f1": ev.get("test_macro_f1"),
        "n_test": ev.get("test_n"),
        "train_metrics": model,
        "history": history,
        "validate": {k: v for k, v in summary.items() if k.startswith(("n_", "quarantined_")) and v},
        "registration": json.loads(reg.read_text()) if reg.is_file() else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=HYMENOPTERA)
    p.add_argument("--minutes", type=float, default=None, help="passed to vistune init")
    p.add_argument("--workdir", type=Path, default=None, help="keep the temp repo here (default: a temp dir, removed)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "accuracy_cpu.json")
    a = p.parse_args(argv)
    root = a.workdir or Path(tempfile.mkdtemp(prefix="vistune-accuracy-"))
    root.mkdir(parents=True, exist_ok=True)
    log = a.out.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    try:
        in_progress = copy_tree(root)
        git_repo(root)
        load_before = os.getloadavg()
        init_cmd = [sys.executable, "-m", "app.cli", "init", str(a.data.resolve())]
        init_s = run(init_cmd + ([f"--minutes={a.minutes:g}"] if a.minutes else []), root, log)
        repro_s = run(["dvc", "repro"], root, log)
        found = results(root)
        out = {
            "date": date.today().isoformat(),
            "machine": f"{os.cpu_count()} CPU cores",
            "data": str(a.data),
            "commands": [
                "vistune init " + str(a.data) + (f" --minutes {a.minutes:g}" if a.minutes else ""),
                "dvc repro",
            ],
            "recipe": recipe(root),
            "init_s": round(init_s, 1),
            "pipeline_s": round(repro_s, 1),
            "wall_s": round(init_s + repro_s, 1),
            "stage_s": stage_times(log.read_text(errors="replace")),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "working_tree_changes": in_progress,
            **found,
        }
    finally:
        if a.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"test accuracy {out['test_accuracy']:.4f} (n={out['n_test']}), whole pipeline {out['wall_s']:.0f}s "
        f"(init {out['init_s']:.0f}s + dvc repro {out['pipeline_s']:.0f}s), recipe {out['recipe']['train']} -> {a.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
