"""Data-parallel training on gloo: `torchrun --nproc-per-node 2 -m stages.train` writes once (rank 0), and
`fit` on two ranks keeps them identical on disjoint shards that cover the train set."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import REPO, tiny_params_dict, write_params
from vistune.models.classifier import Classifier
from vistune.io import read_json
from vistune.layout import Layout


def test_ddp_two_gloo_processes(prepared_tiny, tmp_path):
    lay = Layout(tmp_path)
    shutil.copytree(prepared_tiny.prepared, lay.prepared)
    params = tiny_params_dict(train={"model": "timm:resnet10t", "pretrained": "none", "device": "cpu", "batch_size": 8})
    write_params(tmp_path / "params.yaml", params)
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun),
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "-m",
        "stages.train",
        "--params",
        str(tmp_path / "params.yaml"),
        "--root",
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("x2 (DDP)") == 1  # only rank 0 reports
    assert sorted(p.name for p in lay.checkpoint.parent.iterdir()) == ["last.pt"]
    assert sorted(p.name for p in lay.model_dir.iterdir()) == ["history.csv", "metrics.json", "model.pt"]
    assert read_json(lay.train_metrics)["world_size"] == 2
    assert len(pd.read_csv(lay.train_history)) == 1
    Classifier.load(lay.model)


# ---- fit itself on two gloo ranks: identical state, disjoint shards that cover the set ------------

N_TRAIN = 24


def _rank(rank: int, world: int, init_file: str, out_dir: str, backend: str = "gloo") -> None:
    """One DDP rank (spawned): train, then save its state and the shards it was given (nccl: GPU `rank`)."""
    import torch.distributed as tdist

    from tests.vistune.test_trainer import ACFG, TCFG, _backbone, tiny_data
    from vistune.train import distributed as vdist
    from vistune.train.finetune import create_strategy
    from vistune.train.loop import fit
    from vistune.train.steps import epoch_order

    torch.set_num_threads(1)
    device = "cpu" if backend == "gloo" else f"cuda:{rank}"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    tdist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        info = vdist.DistInfo(rank, world, rank)
        tcfg = dataclasses.replace(
            TCFG, epochs=2, batch_size=4, warmup_epochs=0.0, device=device, sync_bn=backend == "nccl"
        )
        b = _backbone(tcfg)
        res = fit(b, create_strategy("full", tcfg), tiny_data(n=N_TRAIN), tcfg, ACFG, progress=False, dist=info)
        shards = [epoch_order(tcfg.seed, e, N_TRAIN, info)[0] for e in range(tcfg.epochs)]
        state = {k: v.cpu() for k, v in b.model.state_dict().items()}
        torch.save({"state": state, "shards": shards, "lr0": res.history[0]["lr"]}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


def check_two_ranks(tmp_path: Path, backend: str = "gloo") -> None:
    """Spawn two ranks of `fit`; both end with the same state, on disjoint shards covering the set."""
    import torch.multiprocessing as mp

    from tests.vistune.test_trainer import TCFG

    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(tmp_path), backend), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k, v in r0["state"].items():  # parameters (DDP) and BatchNorm statistics (synced per epoch)
        assert torch.equal(v, r1["state"][k]), k
    for a, b in zip(r0["shards"], r1["shards"]):
        assert set(a.tolist()).isdisjoint(b.tolist())
        assert sorted(a.tolist() + b.tolist()) == list(range(N_TRAIN))
    assert r0["shards"][0].tolist() != r0["shards"][1].tolist()  # a new order every epoch
    # lr_scaling linear: the schedule runs at 2 x lr (global batch 2 x 4); 3 steps per epoch, 6 in all
    from vistune.train.schedule import WarmupCosine

    assert r0["lr0"] == pytest.approx(WarmupCosine(TCFG.lr * 2, TCFG.min_lr * 2, 0, 6).lr_at(2))


def test_fit_on_two_gloo_ranks_keeps_them_identical(tmp_path):
    check_two_ranks(tmp_path, "gloo")


def test_uneven_shards_pad_by_wrapping():
    from vistune.train import distributed as vdist

    order = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    shards = [vdist.shard(order, vdist.DistInfo(r, 2, r)) for r in (0, 1)]
    assert [len(s) for s in shards] == [4, 4]  # every rank runs the same number of steps
    assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(7))
    assert len(set(shards[0].tolist()) & set(shards[1].tolist())) == 1  # exactly the one wrapped image


def test_lr_scaling_rules_and_sync_bn_needs_cuda():
    from tests.vistune.test_trainer import ACFG, TCFG, _backbone, tiny_data
    from vistune.errors import ConfigError
    from vistune.train import distributed as vdist
    from vistune.train.finetune import create_strategy
    from vistune.train.steps import scaled_lr, setup

    assert [scaled_lr(0.1, 4, r) for r in ("none", "linear", "sqrt")] == pytest.approx([0.1, 0.4, 0.2])
    tcfg = dataclasses.replace(TCFG, sync_bn=True)
    y = torch.from_numpy(tiny_data().splits["train"].labels)
    with pytest.raises(ConfigError, match="train.sync_bn needs CUDA"):
        setup(_backbone(tcfg), create_strategy("full", tcfg), tcfg, ACFG, y, 4, vdist.DistInfo(0, 2, 0))
