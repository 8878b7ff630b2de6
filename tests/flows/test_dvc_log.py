"""What a flow run's log shows of DVC: each repeated warning once, and no progress-bar frames."""

from __future__ import annotations

import subprocess
import sys

from flows.dvc_cli import run_dvc, warn_once
from tests.conftest import REPO


def test_repeated_dvc_warnings_are_logged_once_per_flow_run(tmp_path):
    """Two real `dvc repro` runs of a stage with an empty output: DVC warns twice, the log says it once
    (and again for another flow run)."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text("stages:\n  mk:\n    cmd: mkdir -p out\n    outs:\n      - out\n")
    logged: list[str] = []
    outputs = [run_dvc(["repro", "--force"], tmp_path, log=warn_once(logged.append, "run-a")) for _ in range(2)]
    assert all("WARNING: 'out' is empty." in out for out in outputs)  # DVC says it on every repro
    assert logged.count("WARNING: 'out' is empty.") == 1
    assert sum(line.startswith("Use `dvc push`") for line in logged) == 1
    assert logged.count("> mkdir -p out") == 2  # everything else still logged each time
    other: list[str] = []
    run_dvc(["repro", "--force"], tmp_path, log=warn_once(other.append, "run-b"))
    assert other.count("WARNING: 'out' is empty.") == 1


def test_progress_bars_draw_no_frames_when_stderr_is_not_a_terminal(tmp_path):
    """`augment`'s decode bar (tqdm) over real PNGs, in a subprocess whose stderr is a pipe (as under
    Prefect or DVC): the images are decoded, and no bar frame is printed."""
    from PIL import Image

    from vistune.layout import Layout

    lay = Layout(tmp_path)
    lay.raw.mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(lay.raw / f"{i}.png")
    lay.prepared.mkdir(parents=True)
    code = (
        "import sys\nfrom pathlib import Path\nfrom stages import augment\nfrom vistune.layout import Layout\n"
        f"augment._decode_split(Layout(Path({str(tmp_path)!r})), [f'{{i}}.png' for i in range(5)], 8, 'train')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (lay.prepared / "train_images.npy").is_file()
    assert "decode train" not in done.stderr and "it/s" not in done.stderr and "img/s" not in done.stderr
