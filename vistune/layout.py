"""Where each stage reads and writes, relative to one root: the only place data paths are spelled.

`dvc.yaml` declares the same paths as deps/outs; `tests/test_layout.py` keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path = Path(".")

    @property
    def data(self) -> Path:
        return self.root / "data"

    # ingest
    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def label_overrides(self) -> Path:
        """The reviewer's `path,label` decisions that ingest applies (`vistune.data.label_overrides`)."""
        return self.root / "labels.csv"

    @property
    def ingest_report(self) -> Path:
        return self.data / "ingest" / "report.json"

    # validate
    @property
    def validated(self) -> Path:
        return self.data / "validated"

    @property
    def manifest(self) -> Path:
        return self.validated / "manifest.csv"

    @property
    def quarantine(self) -> Path:
        return self.validated / "quarantine.csv"

    @property
    def decode_cache(self) -> Path:
        """sha256 -> decode facts, kept between runs so unchanged files are not re-decoded."""
        return self.validated / "decode_cache.json"

    @property
    def label_issues(self) -> Path:
        """Images whose label looks wrong, most suspicious first (`vistune.data.label_issues`)."""
        return self.validated / "label_issues.csv"

    @property
    def label_issue_sheet(self) -> Path:
        """Thumbnails of the top suspects, given -> suggested label (the Prefect run's artifact)."""
        return self.data / "reports" / "label_issues.png"

    @property
    def lookalike_sheet(self) -> Path:
        """Val/test photos that look like another shot of a train photo, each beside it (a Prefect artifact)."""
        return self.data / "reports" / "lookalikes.png"

    @property
    def feature_cache(self) -> Path:
        """sha256 -> pretrained-backbone features, kept between runs (`vistune.data.features`)."""
        return self.validated / "feature_cache.npz"

    @property
    def validation_summary(self) -> Path:
        return self.validated / "summary.json"

    @property
    def drift(self) -> Path:
        """The drift result against the champion's training data (`vistune.evaluate.drift`); one flat
        JSON, a DVC metric of `validate`, read by the model card."""
        return self.validated / "drift.json"

    @property
    def validation_docs(self) -> Path:
        return self.data / "reports" / "validation"

    # augment
    @property
    def prepared(self) -> Path:
        return self.data / "prepared"

    @property
    def augment_preview(self) -> Path:
        return self.data / "reports" / "augment_preview.png"

    # train
    @property
    def model_dir(self) -> Path:
        return self.data / "model"

    @property
    def model(self) -> Path:
        return self.model_dir / "model.pt"

    @property
    def checkpoint(self) -> Path:
        return self.data / "checkpoints" / "last.pt"

    @property
    def train_metrics(self) -> Path:
        return self.model_dir / "metrics.json"

    @property
    def train_history(self) -> Path:
        return self.model_dir / "history.csv"

    # evaluate
    @property
    def eval_dir(self) -> Path:
        return self.data / "eval"

    @property
    def eval_metrics(self) -> Path:
        return self.eval_dir / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.eval_dir / "predictions.csv"

    @property
    def confusion_png(self) -> Path:
        return self.eval_dir / "confusion_matrix.png"

    @property
    def class_report(self) -> Path:
        return self.eval_dir / "classification_report.csv"

    @property
    def drift_reference(self) -> Path:
        """Penultimate embeddings of a seeded sample of the training images (float16 .npy), logged with
        the model under `evaluate/` so a later drift check needs neither the images nor the decoder."""
        return self.eval_dir / "drift_reference.npy"

    # score (`vistune score`): default output folder; --out chooses another
    @property
    def score_dir(self) -> Path:
        return self.data / "score"

    # register
    @property
    def registration(self) -> Path:
        return self.data / "registry" / "registration.json"

    @property
    def register_drift(self) -> Path:
        """Which champion validate's drift was measured against and whether that is the one the gate
        compared with (a DVC metric: `vistune exp` shows it)."""
        return self.data / "register" / "drift.json"

    # evaluate extras
    @property
    def roc_pr_png(self) -> Path:
        return self.eval_dir / "roc_pr.png"

    @property
    def reliability_png(self) -> Path:
        return self.eval_dir / "reliability.png"

    @property
    def reliability_csv(self) -> Path:
        return self.eval_dir / "reliability.csv"

    @property
    def calibration(self) -> Path:
        return self.eval_dir / "calibration.json"

    @property
    def robustness_csv(self) -> Path:
        return self.eval_dir / "robustness.csv"

    @property
    def robustness_png(self) -> Path:
        return self.eval_dir / "robustness.png"

    @property
    def gradcam_png(self) -> Path:
        return self.eval_dir / "gradcam.png"

    # compress (optional)
    @property
    def compress_dir(self) -> Path:
        return self.data / "compress"

    @property
    def compress_models(self) -> Path:
        return self.compress_dir / "models"

    @property
    def compress_report(self) -> Path:
        return self.compress_dir / "report.csv"

    @property
    def compress_metrics(self) -> Path:
        return self.compress_dir / "metrics.json"
