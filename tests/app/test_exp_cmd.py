"""`vistune exp`: a real `dvc exp save` in a temp git repo, read back through `dvc exp show --json`,
fits 120 columns with the changed param in the first columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from app import cli, exp_cmd
from integrations import champion
from flows.dvc_cli import dvc_output
from tests.conftest import REPO, tiny_git_repo

METRICS_FILES = (
    "data/ingest/report.json",
    "data/validated/summary.json",
    "data/validated/drift.json",
    "data/model/metrics.json",
    "data/eval/metrics.json",
    "data/compress/metrics.json",
)


def _copy_demo_metrics(root: Path) -> None:
    """The committed demo's metrics files (every key `dvc exp show` prints, drift's included), declared
    in a one-stage dvc.yaml: `dvc exp save` needs every declared output present, and the real stages'
    data and models are not in a test repo."""
    for rel in METRICS_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    # register's drift metric (no demo file yet): the baseline measured drift against the gate's champion
    drift = root / "data/register/drift.json"
    drift.parent.mkdir(parents=True, exist_ok=True)
    drift.write_text(json.dumps(champion.drift_check({"status": "compared", "reference": "m v1 (champion)"}, "1")))
    files = (*METRICS_FILES, "data/register/drift.json")
    stage = {"cmd": "true", "params": ["train.epochs"], "metrics": [{rel: {"cache": False}} for rel in files]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"metrics": stage}}, sort_keys=False))


@pytest.fixture(scope="module")
def exp_repo(tmp_path_factory) -> Path:
    """A repo whose HEAD has the demo's params and metrics, and one saved experiment with
    train.epochs lowered and a worse accuracy."""
    root = tiny_git_repo(tmp_path_factory.mktemp("exp") / "repo", prepare=_copy_demo_metrics)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] += 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    metrics = json.loads((root / "data/eval/metrics.json").read_text())
    metrics["test_accuracy"] = 0.5
    (root / "data/eval/metrics.json").write_text(json.dumps(metrics))
    stale = champion.drift_check({"status": "skipped", "reason": "no champion yet"}, "2")  # validate was cached
    (root / "data/register/drift.json").write_text(json.dumps(stale))
    proc = dvc_output(["exp", "save", "--name", "more-epochs"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def test_exp_rows_fit_120_columns_with_the_changed_param_first(exp_repo: Path, capsys):
    rows = exp_cmd.parse_show(exp_cmd.show_json(exp_repo))
    assert [r.name for r in rows][0] == "workspace" and "more-epochs" in [r.name for r in rows]
    assert exp_cmd.changed_params(rows) == ["train.epochs"]  # drift's n_new/reason are metrics, not shown

    assert cli.main(["--root", str(exp_repo), "exp", "--width", "120"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 120 and len(lines) == 4  # header + workspace, baseline, experiment
    assert lines[0].split()[:3] == ["experiment", "train.epochs", "accuracy"]
    assert "n_new" not in lines[0] and "reason" not in lines[0]
    by_name = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_name["more-epochs"][2] == "0.5000"
    # which champion drift was measured against, read by DVC from register's metric, stale marked
    start = lines[0].index("drift vs")
    drift = {line.split()[0]: line[start:].split("  ")[0].strip() for line in lines[1:]}
    assert drift["more-epochs"] == "stale: none, gate v2" and drift["workspace"] == "stale: none, gate v2"
    assert list(drift.values()).count("v1") == 1  # the baseline commit

    assert cli.main(["--root", str(exp_repo), "exp", "--width", "120", "--sort-by", "test_accuracy"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[0] == "more-epochs"  # best first: it is worst
    assert cli.main(["--root", str(exp_repo), "exp", "--sort-by", "no.such.key"]) == 2
    assert "valid keys" in capsys.readouterr().err


def test_params_that_do_not_fit_become_a_more_marker():
    rows = [
        exp_cmd.ExpRow(
            f"exp-{i}",
            {f"section.param_{k}": i * k for k in range(12)} | {"same": 1},
            {"test_accuracy": 0.9 - i / 10, "test_macro_f1": 0.8, "test_nll": 0.3},
        )
        for i in range(3)
    ]
    text = exp_cmd.format_table(rows, width=80)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    header = lines[0].split()
    assert header[:2] == ["experiment", "section.param_1"] and "same" not in header and "section.param_0" not in header
    shown = [h for h in header if h.startswith("section.")]
    more = header[header.index("more") - 1]  # param_0 and "same" are equal everywhere: 11 params changed
    assert more.startswith("+") and len(shown) + int(more[1:]) == 11 and len(shown) < 11
    assert header[-2:] == ["accuracy", "macro_f1"] and "nll" not in header
    assert "nll" in exp_cmd.format_table(rows, width=400, all_metrics=True).splitlines()[0]
    narrow = exp_cmd.format_table(rows, width=70, all_metrics=True).splitlines()
    assert max(map(len, narrow)) <= 70  # extra metrics go before the first param and the headline
    assert narrow[0].split()[:4] == ["experiment", "section.param_1", "+10", "more"]
    assert narrow[0].split()[4:6] == ["accuracy", "macro_f1"] and narrow[0].split()[-2:] == ["+1", "more"]


def test_outside_a_dvc_repo_is_one_line_and_exit_2(tmp_path: Path, capsys):
    assert cli.main(["--root", str(tmp_path), "exp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vistune exp: error:") and "DVC repository" in err[0]
