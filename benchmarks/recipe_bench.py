"""The recipe on photo sets it was not tuned on: `vistune init SOURCE` then `dvc repro`, as a new user runs them.

Each run happens in a fresh clone of this repository (so every stage really runs), one clone per set and budget.
A row per run: test accuracy, macro-F1, wall time of `init` and of `dvc repro`, `init`'s own estimate, the
recipe it chose (backbone, strategy, input size, epochs, batch, LR) and the load average before and after.

    .venv/bin/python benchmarks/recipe_bench.py                       # the four ../shared/datasets sets
    .venv/bin/python benchmarks/recipe_bench.py hymenoptera /data/my_photos --minutes 10 30
    .venv/bin/python benchmarks/recipe_bench.py plantvillage_potato --set train.strategy=full   # a pinned variant

`--set` passes pins to `vistune init` (a hand-set variant next to the chosen recipe); test figures are read only
after the run, never used to choose anything here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"
SETS = ("hymenoptera", "plantvillage_potato", "cub_warblers", "eurosat_rgb5")
RECIPE_KEYS = (
    "train.model",
    "train.strategy",
    "augment.image_size",
    "train.epochs",
    "train.batch_size",
    "train.lr",
    "train.head_init",
)
ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PYTHONUNBUFFERED": "1",
}


def _source(name: str) -> Path:
    path = Path(name)
    return path.resolve() if path.exists() else DATASETS / name


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    """Run `cmd` with its output appended to `log`; seconds taken. A failure stops the bench with the log's tail."""
    t0 = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} (exit {done.returncode}); log {log}:\n{tail}")
    return time.perf_counter() - t0


class _LoadSampler:
    """The 1-min load average every 15 s while a run lasts: its mean says how shared the machine was."""

    def __init__(self) -> None:
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(15):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> _LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 2) if self.samples else None


def _recipe(params: Path) -> dict:
    doc = yaml.safe_load(params.read_text())
    return {key: doc[key.split(".")[0]].get(key.split(".")[1]) for key in RECIPE_KEYS}


def val_accuracy(clone: Path) -> float | None:
    """The kept weights' val accuracy (train's history at `kept_epoch`): what a variant is chosen by, never test."""
    import csv

    kept = json.loads((clone / "data" / "model" / "metrics.json").read_text()).get("kept_epoch")
    with (clone / "data" / "model" / "history.csv").open() as f:
        rows = {int(r["epoch"]): float(r["val_accuracy"]) for r in csv.DictReader(f)}
    return round(rows[kept], 4) if kept in rows else None


def _estimate(log: Path) -> tuple[float | None, float | None]:
    """`init`'s printed estimate (scaled by the CPU's speed then) and its quiet-machine figure."""
    text = log.read_text()
    found = re.findall(r"estimated ([0-9.]+) min for the whole pipeline\)", text)
    quiet = re.findall(r"([0-9.]+) min on a quiet machine", text)
    now = float(found[-1]) if found else None
    return now, float(quiet[-1]) if quiet else now


def run_one(name: str, minutes: float | None, pins: list[str], work: Path) -> dict:
    """Clone, `vistune init`, `dvc repro`; the row for this set and budget."""
    tag = f"{Path(name).name}-{'default' if minutes is None else f'{minutes:g}min'}" + ("-pinned" if pins else "")
    clone = work / tag
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = dict(os.environ, **ENV, PREFECT_HOME=str(clone / ".prefect"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(clone)  # `vistune init` runs the clone's code, not the editable install's checkout
    log = clone / "bench.log"
    init = ["vistune", "init", str(_source(name))] + ([] if minutes is None else ["--minutes", f"{minutes:g}"])
    for pin in pins:
        init += ["--set", pin]
    load_before = _load()
    with _LoadSampler() as load:
        init_s = _run(init, clone, env, log)
        repro_s = _run(["dvc", "repro", "--quiet"], clone, env, log)
    metrics = json.loads((clone / "data" / "eval" / "metrics.json").read_text())
    estimate = _estimate(log)
    return {
        "set": Path(name).name,
        "budget_minutes": minutes,
        "pins": pins,
        "val_accuracy": val_accuracy(clone),
        "test_accuracy": round(metrics["test_accuracy"], 4),
        "test_macro_f1": round(metrics["test_macro_f1"], 4),
        "test_n": metrics["test_n"],
        "init_s": round(init_s, 1),
        "repro_s": round(repro_s, 1),
        "estimated_min": estimate[0],
        "estimated_quiet_min": estimate[1],
        "measured_min": round((init_s + repro_s) / 60, 2),
        "recipe": _recipe(clone / "params.yaml"),
        "load_before": load_before,
        "load_after": _load(),
        "load_mean": load.mean,
        "clone": str(clone),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", default=list(SETS), help="names under ../shared/datasets or ImageFolder paths")
    ap.add_argument("--minutes", nargs="*", type=float, default=[], help="budgets besides the default one")
    ap.add_argument("--no-default", action="store_true", help="only the --minutes budgets")
    ap.add_argument("--set", dest="pins", action="append", default=[], help="SECTION.KEY=VALUE pinned in init")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vistune-recipe-bench"), help="where the clones go")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "recipe_bench.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    budgets = ([] if args.no_default else [None]) + list(args.minutes)
    rows = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    print(f"{'set':22} {'budget':>7} {'acc':>6} {'F1':>6} {'est':>5} {'took':>5}  recipe")
    for name in args.sets:
        for minutes in budgets:
            row = dict(run_one(name, minutes, args.pins, args.work), date=str(date.today()))
            rows.append(row)
            r = row["recipe"]
            print(
                f"{row['set']:22} {str(minutes or 'default'):>7} {row['test_accuracy']:6.4f} "
                f"{row['test_macro_f1']:6.4f} {row['estimated_min'] or 0:5.1f} {row['measured_min']:5.1f}  "
                f"{r['train.model'].split(':')[-1]} {r['train.strategy']} {r['augment.image_size']}px "
                f"{r['train.epochs']}ep lr {r['train.lr']} (load mean {row['load_mean']})",
                flush=True,
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
