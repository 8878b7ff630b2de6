"""Serving that follows the alias, measured (`serve_load.py --swap`): a fresh sqlite store with two
versions, `vistune serve` on it, steady load, a promote and a rollback; see serve_load.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _shifted_copy(src: Path, dest: Path) -> None:
    """`src` with its head's bias shifted toward class 0: a version with different weights and answers."""
    import torch

    payload = torch.load(src, map_location="cpu", weights_only=True)
    n = len(payload["classes"])
    bias = [k for k, v in payload["state_dict"].items() if v.ndim == 1 and v.shape[0] == n][-1]
    payload["state_dict"][bias][0] += 20.0
    torch.save(payload, dest)


def make_store(workdir: Path, model_file: Path, image: Path) -> tuple[Path, object, Path, str]:
    """params.yaml pointing at a new store under `workdir` holding v1 (champion) and v2; returns
    (params file, client, lock dir, model name)."""
    import torch

    from integrations import registry, tracking
    from vistune.config import load_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["register"].update(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", artifact_root=str(workdir / "artifacts"))
    params = workdir / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_params(params).register
    tracking.setup(cfg, workdir)
    classes = torch.load(model_file, map_location="cpu", weights_only=True)["classes"]
    _shifted_copy(model_file, workdir / "model_v2.pt")
    for f in (model_file, workdir / "model_v2.pt"):
        tracking.log_model(f, classes, image.read_bytes(), registered_name=cfg.model_name)
    client, lock = tracking.open_registry(cfg, workdir)
    registry.promote(client, cfg.model_name, "1", lock, reason="serve_swap benchmark: v1 serves first")
    return params, client, lock, cfg.model_name


def poll_cost_ms(client, name: str, n: int = 100) -> float:
    """Median cost of the watcher's one registry call (`get_model_version_by_alias`)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get_model_version_by_alias(name, "champion")
        times.append(time.perf_counter() - t0)
    return round(sorted(times)[n // 2] * 1000, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group; SIGKILL when it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _start_server(params: Path, workdir: Path, port: int, poll_s: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(workdir / "serve.log", "w")  # noqa: SIM115 - the server's own log, kept for reading after
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "--params",
            str(params),
            "--root",
            str(workdir),
            "serve",
            "--port",
            str(port),
            "--poll-s",
            str(poll_s),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"server did not start; see {workdir / 'serve.log'}")


def _wait_for(load, version: str, since: float, limit_s: float = 300) -> float:
    """End time of the first successful answer by `version` completed after `since`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        hits = [t for t, _, ok, what in list(load.samples) if ok and what == version and t > since]
        if hits:
            return min(hits)
        time.sleep(0.2)
    raise SystemExit(f"v{version} never answered within {limit_s} s")


def _swap(load, act, version: str, phase_s: float, summarize) -> dict:
    """Change the alias under load; windows: `phase_s` before the change, the change until the first
    answer by `version`, `phase_s` after it."""
    t_change = time.monotonic()
    act()
    t_first = _wait_for(load, version, t_change)
    time.sleep(phase_s)
    t_end = time.monotonic()

    def window(a: float, b: float) -> dict:
        return summarize([s for s in list(load.samples) if a < s[0] <= b], b - a)

    return {
        "to_version": version,
        "alias_change_to_first_answer_s": round(t_first - t_change, 2),
        "before": window(t_change - phase_s, t_change),
        "during": window(t_change, t_first),
        "after": window(t_first, t_end),
    }


def swap_benchmark(
    model_file: Path, image: Path, body: bytes, phase_s: float, concurrency: int, poll_s: float, workdir: Path | None
) -> dict:
    from benchmarks.serve_load import Load, summarize
    from integrations import registry

    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="vistune-serve-swap-")
    work = Path(workdir or tmp.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    params, client, lock, name = make_store(work, model_file.resolve(), image)
    port = free_port()
    proc = _start_server(params, work, port, poll_s)
    load = Load(f"http://127.0.0.1:{port}/invocations", body, concurrency)
    try:
        t0 = time.monotonic()
        load.start()
        time.sleep(phase_s)
        promote = _swap(
            load,
            lambda: registry.promote(client, name, "2", lock, reason="serve_swap: promote"),
            "2",
            phase_s,
            summarize,
        )
        rollback = _swap(load, lambda: registry.rollback(client, name, lock), "1", phase_s, summarize)
        load.stop()
        total = summarize(load.samples, time.monotonic() - t0)
    finally:
        load.stop()
        stop_process_group(proc)
    result = {
        "model_file": str(model_file),
        "concurrency": concurrency,
        "poll_s": poll_s,
        "phase_s": phase_s,
        "poll_cost_ms": poll_cost_ms(client, name),
        "promote": promote,
        "rollback": rollback,
        "total": total,
    }
    if tmp is not None:
        tmp.cleanup()
    for what in ("promote", "rollback"):
        r = result[what]
        print(
            f"{what} -> v{r['to_version']}: first answer {r['alias_change_to_first_answer_s']} s after the alias "
            f"change; "
            + "; ".join(
                f"{k} p50 {r[k]['p50_ms']} / p99 {r[k]['p99_ms']} ms, {r[k]['requests']} ok, {r[k]['errors']} failed"
                for k in ("before", "during", "after")
            )
        )
    print(f"total: {total['requests']} ok, {total['errors']} failed; poll cost {result['poll_cost_ms']} ms")
    return result
