"""PNG plots people would rather look at than read (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vistune.io import atomic_path

# no "Software: Matplotlib version ..." chunk: the pixels alone decide a plot file's bytes (and DVC md5)
PNG_METADATA = {"Software": None}


def confusion_matrix_png(cm: np.ndarray, classes: list[str], path: Path, title: str = "Confusion matrix") -> None:
    """Counts on the left, row-normalized (recall) on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, mat, sub, fmt in ((axes[0], cm, "counts", "d"), (axes[1], norm, "normalized by true class", ".2f")):
        im = ax.imshow(mat, cmap="Blues", vmin=0)
        ax.set_title(f"{title} ({sub})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(n), classes, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
        ax.set_yticks(range(n), classes)
        if n <= 20:
            thresh = mat.max() / 2 if mat.size else 0
            for i in range(n):
                for j in range(n):
                    ax.text(
                        j,
                        i,
                        format(mat[i, j], fmt),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if mat[i, j] > thresh else "black",
                    )
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _plt()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def roc_pr_png(curves: dict[str, dict], path: Path) -> None:
    """One-vs-rest ROC (left) and precision-recall (right), one line per class with its AUC / AP."""
    plt = _plt()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 5))
    for name, c in curves.items():
        roc.plot(c["fpr"], c["tpr"], lw=1.2, label=f"{name} (AUC {c['roc_auc']:.3f})")
        pr.step(c["recall"], c["precision"], where="post", lw=1.2, label=f"{name} (AP {c['ap']:.3f})")
    roc.plot([0, 1], [0, 1], "k--", lw=0.8)
    roc.set(
        xlabel="false positive rate", ylabel="true positive rate", title="ROC, one vs rest", xlim=(0, 1), ylim=(0, 1.02)
    )
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall, one vs rest", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (roc, pr):
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "lower left")
    _save(fig, path)


def reliability_png(tables: dict[str, object], path: Path) -> None:
    """Reliability diagram: accuracy vs confidence per bin, one line per variant (raw, scaled)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    for label, t in tables.items():
        used = t[t["count"] > 0]
        ax.plot(used["confidence"], used["accuracy"], "o-", ms=4, label=label)
    ax.set(xlabel="confidence", ylabel="accuracy", title="Reliability diagram", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, path)


def robustness_png(table, path: Path) -> None:
    """Accuracy vs severity per corruption (left) and vs epsilon per attack (right)."""
    plt = _plt()
    fig, (cax, aax) = plt.subplots(1, 2, figsize=(11, 4.5))
    clean = (
        float(table[table.perturbation == "clean"].accuracy.iloc[0]) if (table.perturbation == "clean").any() else None
    )
    for kind, grp in table[table.perturbation != "clean"].groupby("perturbation"):
        ax = aax if kind in ("fgsm", "pgd") else cax
        xs = [0.0, *grp.severity] if clean is not None else list(grp.severity)
        ys = [clean, *grp.accuracy] if clean is not None else list(grp.accuracy)
        ax.plot(xs, ys, "o-", label=kind)
    cax.set(xlabel="severity (0 = clean)", ylabel="accuracy", title="Corruptions", ylim=(0, 1.02))
    aax.set(xlabel="epsilon (pixel units, L-inf)", ylabel="accuracy", title="Adversarial attacks", ylim=(0, 1.02))
    for ax in (cax, aax):
        ax.legend(fontsize=8)
    _save(fig, path)


def gradcam_grid_png(rows: list[tuple[str, np.ndarray, np.ndarray, list[str]]], path: Path) -> None:
    """One row per group (e.g. correct, wrong): images (N x 3 x H x W uint8), heatmaps, captions."""
    plt = _plt()
    cols = max([len(r[1]) for r in rows] + [1])
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.8 * cols, 2.1 * len(rows)), squeeze=False)
    for r, (title, images, cams, captions) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c].transpose(1, 2, 0))
                ax.imshow(cams[c], cmap="jet", alpha=0.45, vmin=0, vmax=1)
                ax.set_title(captions[c], fontsize=7)
        axes[r][0].text(-0.1, 0.5, title, transform=axes[r][0].transAxes, rotation=90, ha="right", va="center")
        if len(images) == 0:
            axes[r][0].text(0.5, 0.5, f"no {title} predictions", ha="center", va="center", fontsize=8)
    _save(fig, path)


def placeholder_png(path: Path, text: str) -> None:
    """A small PNG saying why a plot is absent, so DVC's declared plot files always exist."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    _save(fig, path)


def thumbnail_sheet_png(images: list[np.ndarray], captions: list[str], path: Path, empty: str, cols: int = 6) -> None:
    """Captioned thumbnails (each 3 x H x W uint8) in a grid: validate's suspects for people to look at;
    `empty` is the placeholder's text when there are none."""
    if not images:
        placeholder_png(path, empty)
        return
    plt = _plt()
    rows = -(-len(images) // cols)
    width = 1.9 * images[0].shape[2] / images[0].shape[1]  # inches a cell, wider for side-by-side pairs
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, (1.9 + 0.45) * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k].transpose(1, 2, 0))
            ax.set_title(captions[k], fontsize=7)
    _save(fig, path)
