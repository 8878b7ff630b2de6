"""A flow run's name, as typed in the Prefect Custom run form, becomes a valid DVC experiment name."""

from __future__ import annotations

import subprocess

import pytest

from flows.pipeline import experiment_name


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("brisk-heron", "brisk-heron"),  # Prefect's generated names stay as they are: one name everywhere
        ("epochs-2-lr-0.004", "epochs-2-lr-0.004"),
        ("epochs=2 lr=0.004", "epochs-2-lr-0.004"),
        ("  try: more epochs?  ", "try-more-epochs"),
        ("a..b~c^d", "a.b-c-d"),
        ("run.lock", "run"),
        ("???", "vistune-run"),
        ("", "vistune-run"),
    ],
)
def test_typed_run_names_become_valid_experiment_names(typed, expected):
    name = experiment_name(typed)
    assert name == expected
    # DVC stores an experiment as a git ref: git itself must accept the name
    check = subprocess.run(["git", "check-ref-format", f"refs/exps/{name}"], capture_output=True)
    assert check.returncode == 0, name
