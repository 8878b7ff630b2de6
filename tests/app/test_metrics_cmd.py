"""`vistune metrics`: the headline figures of the committed demo outputs, one short line each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from app import cli
from tests.conftest import REPO


def test_metrics_prints_the_headline_from_the_metrics_files(tmp_path: Path, capsys):
    for rel in ("data/eval/metrics.json", "data/validated/summary.json", "data/model/metrics.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    metrics = json.loads((tmp_path / "data/eval/metrics.json").read_text())
    summary = json.loads((tmp_path / "data/validated/summary.json").read_text())
    assert cli.main(["--root", str(tmp_path), "metrics"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80 and len(lines) <= 25  # `dvc metrics show` is ~1,800 characters a line
    assert f"  accuracy {' ' * 26}{metrics['test_accuracy']:.4f}" in lines
    assert any(line.split() == ["macro-F1", f"{metrics['test_macro_f1']:.4f}"] for line in lines)
    assert any(line.split()[-3:] == [str(summary["n_good"]), "/", str(summary["n_quarantined"])] for line in lines)
    assert cli.main(["--root", str(tmp_path), "metrics", "--all"]) == 0
    every = capsys.readouterr().out.splitlines()
    assert f"  {'test_macro_f1':<34} {metrics['test_macro_f1']:.6g}" in every
    assert cli.main(["--root", str(tmp_path / "empty"), "metrics"]) == 0
    assert "run `dvc repro`" in capsys.readouterr().out
