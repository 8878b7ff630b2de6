"""The model card of a real registered version, opened in headless Chromium with the network cut off:
every image loads, and every number it shows is the run's own (metrics.json, the per-class report)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from app import cli
from integrations import tags as T, tracking
from vistune.layout import Layout

from tests.flows.test_prefect_ui import CHROMIUM, _skip_reason
from tests.integrations.registry_helpers import METRIC_GATE_ONLY, register, write_params_file

NAME = "vistune-classifier"


def _open_offline(page, url: str) -> list[str]:
    """Load `url` with every request outside file:/data: refused; returns the refused URLs."""
    refused: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url)
    page.wait_for_load_state("load")
    return refused


def test_model_card_renders_offline_with_the_runs_numbers(trained_tiny, mlflow_cfg, tmp_path, capsys):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    receipt = register(trained_tiny, tmp_path / "run", mlflow_cfg, register_overrides=METRIC_GATE_ONLY)
    version = receipt["version"]
    client, _ = tracking.open_registry(mlflow_cfg, tmp_path)
    mv = client.get_model_version(NAME, version)
    assert mv.tags[T.CARD] == receipt["card"] == f"runs:/{receipt['run_id']}/card/model_card.html"
    exp = client.get_run(receipt["run_id"]).info.experiment_id  # a markdown link the MLflow UI renders clickable
    assert (
        f"Model card: [model_card.html](#/experiments/{exp}/runs/{receipt['run_id']}/artifacts/card/model_card.html)"
    ) in mv.description

    params = write_params_file(tmp_path / "params.yaml", mlflow_cfg)
    out = tmp_path / "card" / "v.html"
    assert cli.main(["--params", str(params), "--root", str(tmp_path), "card", version, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    lay = Layout(tmp_path / "run")
    metrics = json.loads(lay.eval_metrics.read_text())
    report = pd.read_csv(lay.class_report, dtype={"class": str})

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            refused = _open_offline(page, out.as_uri())
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.src.slice(0, 15)])"
            )
            shown = page.eval_on_selector_all(
                "[data-metric]", "els => els.map(e => [e.dataset.metric, +e.dataset.digits, e.textContent.trim()])"
            )
            per_class = page.eval_on_selector_all(
                "#per-class tr", "rows => rows.slice(1).map(r => [...r.cells].map(c => c.textContent.trim()))"
            )
            ci = page.eval_on_selector("#headline", "t => t.rows[1].cells[2].textContent.trim()")
        finally:
            browser.close()
    assert refused == []
    assert len(images) == 5  # confusion, reliability, ROC/PR, robustness, Grad-CAM
    assert all(done and width > 0 and src == "data:image/png;" for done, width, src in images), images
    assert {k for k, _, _ in shown} >= {"test_accuracy", "test_macro_f1", "test_ece", "test_ece_uncalibrated"}
    for key, digits, text in shown:
        assert text == f"{metrics[key]:.{digits}f}", key
    assert per_class == [
        [r["class"], f"{r.precision:.4f}", f"{r.recall:.4f}", f"{r.f1:.4f}", str(r.support)]
        for _, r in report.iterrows()
    ]
    low, high = (float(x) for x in ci.strip("[]").split(", "))
    assert low <= metrics["test_accuracy"] <= high and low < high  # a real interval around the test accuracy


def test_the_version_description_links_the_card_in_the_mlflow_ui(trained_tiny, mlflow_cfg, tmp_path):
    """The real MLflow UI (`mlflow server` on the test's sqlite store) in headless Chromium: the version
    page's description shows the card as a link, and following it opens the card in the run's artifacts."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    from tests.integrations.mlflow_server import MlflowServer

    receipt = register(trained_tiny, tmp_path / "run", mlflow_cfg, register_overrides=METRIC_GATE_ONLY)
    version, run_id = receipt["version"], receipt["run_id"]
    server = MlflowServer(tmp_path / "ui", mlflow_cfg.tracking_uri).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{server.url}/#/models/{NAME}/versions/{version}")
                link = page.locator("a", has_text="model_card.html").first
                expect(link).to_be_visible(timeout=60_000)
                assert link.get_attribute("href").endswith(f"/runs/{run_id}/artifacts/card/model_card.html")
                page.screenshot(path=str(tmp_path / "mlflow-version.png"))
                if link.get_attribute("target") == "_blank":  # MLflow opens description links in a new tab
                    with page.expect_popup() as popup:
                        link.click()
                    card = popup.value
                else:
                    link.click()
                    card = page
                expect(card).to_have_url(
                    re.compile(rf".*/runs/{run_id}/artifacts/card/model_card\.html$"), timeout=60_000
                )
                expect(card.get_by_text("model_card.html").first).to_be_visible(timeout=60_000)
                card.screenshot(path=str(tmp_path / "mlflow-card.png"))
            finally:
                browser.close()
    finally:
        server.stop()
