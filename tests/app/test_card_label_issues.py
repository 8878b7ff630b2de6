"""The model card shows validate's suspect pictures (label issues, look-alikes) only when validate flagged some."""

from __future__ import annotations

import json
from pathlib import Path

from app import card
from vistune.evaluate.plots import thumbnail_sheet_png
from vistune.layout import Layout


def test_card_shows_validate_pictures_only_with_suspects(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    for sheet in (lay.label_issue_sheet, lay.lookalike_sheet):
        thumbnail_sheet_png([], [], sheet, "none")  # what validate writes when nothing is flagged
    lay.validated.mkdir(parents=True)
    title = dict(card.IMAGES)

    def titles(summary: dict) -> set[str]:
        lay.validation_summary.write_text(json.dumps(summary))
        return {t for t, _ in card.context(lay, {}, {}, tmp_path)["images"]} & {
            title["label_issue_sheet"],
            title["lookalike_sheet"],
        }

    assert titles({"n_label_issues": 0, "n_leaked_lookalike": 0}) == set()
    assert titles({"n_label_issues": 3, "n_leaked_lookalike": 0}) == {title["label_issue_sheet"]}
    assert titles({"n_label_issues": 0, "n_leaked_lookalike": 2}) == {title["lookalike_sheet"]}
