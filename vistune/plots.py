"""PNG plots people would rather look at than read (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vistune.io import atomic_path


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
                    ax.text(j, i, format(mat[i, j], fmt), ha="center", va="center", fontsize=8,
                            color="white" if mat[i, j] > thresh else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
