"""A reviewer approves in the real Prefect UI (headless Chromium): the paused run's Resume dialog shows
the gate's numbers, the model-card link and the typed form; choosing "approve" makes the version champion.

A real `prefect server start` (temp PREFECT_HOME, free port); the flow run is a separate process, as
a served or work-pool run would be; the MLflow store is a real sqlite registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integrations import history, registry, tracking

from tests.conftest import REPO, free_port, stop_process_group
from tests.flows.test_prefect_ui import BIN, CHROMIUM, _skip_reason
from tests.integrations.registry_helpers import METRIC_GATE_ONLY, register

pytestmark = pytest.mark.slow

NAME = "vistune-classifier"
RUN_FLOW = (
    "import json, sys; from tests.flows.test_approval import review_flow; "
    "print(json.dumps(review_flow(json.loads(sys.argv[1]), sys.argv[2])))"
)


def _screenshot(page, tmp_path: Path) -> None:
    shot = tmp_path / "prefect-ui-approval-form.png"
    page.screenshot(path=str(shot))
    if os.environ.get("VISTUNE_SCREENSHOT_DIR"):
        out = Path(os.environ["VISTUNE_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        out.joinpath(shot.name).write_bytes(shot.read_bytes())


def _paused_run(timeout: float = 120) -> str:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = [r for r in client.read_flow_runs() if r.state and r.state.is_paused()]
            if runs:
                return str(runs[0].id)
            time.sleep(0.5)
    raise AssertionError("no flow run paused for approval")


def test_reviewer_approves_in_the_prefect_ui(trained_tiny, mlflow_cfg, tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.wait import wait_http

    reg = register(trained_tiny, tmp_path / "run", mlflow_cfg, {**METRIC_GATE_ONLY, "approval": "required"})
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"{url}/api",
        "PYTHONPATH": str(REPO),
    }
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]],
        env=env,
        stdout=(tmp_path / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    run = None
    try:
        wait_http(f"{url}/api/health", 180)
        run = subprocess.Popen(
            [sys.executable, "-c", RUN_FLOW, json.dumps(reg), str(tmp_path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "flow.log").open("w"),
            text=True,
            start_new_session=True,
        )
        with temporary_settings({PREFECT_API_URL: f"{url}/api"}), sync_playwright() as p:
            run_id = _paused_run()
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            try:
                page.goto(f"{url}/runs/flow-run/{run_id}")
                page.get_by_role("button", name="Resume").first.click()
                dialog = page.get_by_role("dialog")
                expect(dialog.get_by_text(f"Promote {NAME} v{reg['version']} to champion?")).to_be_visible()
                expect(dialog.get_by_role("link", name="Model card")).to_have_attribute(
                    "href",
                    f"http://127.0.0.1:5000/#/experiments/{reg['experiment_id']}/runs/{reg['run_id']}"
                    "/artifacts/card/model_card.html",
                )
                dialog.locator("button.p-select-button__control").first.press("ArrowDown")  # opens the choices
                page.get_by_role("option", name="approve", exact=True).click()
                dialog.locator("textarea").nth(0).fill("alice")
                dialog.locator("textarea").nth(1).fill("checked the card")
                # force, like the promote deployment (left off: this version passed the guard)
                expect(dialog.get_by_text("approve even if the promotion guard refuses").first).to_be_visible()
                _screenshot(page, tmp_path)
                dialog.get_by_role("button", name="Submit").click()
                out, _ = run.communicate(timeout=120)
            finally:
                browser.close()
    finally:
        stop_process_group(run)
        stop_process_group(server)
    assert json.loads(out.strip().splitlines()[-1])["outcome"] == "approved", (tmp_path / "flow.log").read_text()[
        -2000:
    ]
    client, _ = tracking.open_receipt_registry(reg, tmp_path)
    assert registry.alias_version(client, NAME, "champion") == reg["version"]
    last = history.read(client, NAME)[-1]
    assert (last.actor, last.action, last.to_version, last.reason) == (
        "reviewer:alice",
        "approval",
        reg["version"],
        "approved by reviewer:alice: checked the card",
    )
