"""The model card shows validate's label-issue thumbnails only when validate flagged some."""

from __future__ import annotations

import json
from pathlib import Path

from app import card
from vistune.evaluate.plots import label_issue_sheet_png
from vistune.layout import Layout


def test_card_shows_the_label_issue_sheet_only_with_suspects(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    label_issue_sheet_png([], [], lay.label_issue_sheet)  # what validate writes when nothing is flagged
    lay.validated.mkdir(parents=True)

    def titles() -> list[str]:
        return [t for t, _ in card.context(lay, {}, {}, tmp_path)["images"]]

    lay.validation_summary.write_text(json.dumps({"n_label_issues": 0}))
    assert not any("label looks wrong" in t for t in titles())
    lay.validation_summary.write_text(json.dumps({"n_label_issues": 3}))
    assert [t for t in titles() if "label looks wrong" in t] == [card.IMAGES[-1][1]]
