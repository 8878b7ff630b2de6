"""Which labelled files in a folder a model has not trained on: the `watch` flow's comparison.

A file is new when its bytes (sha256) are not among the manifest's: renamed copies are not new, an
edited image is. Labelled = under `<folder>/<class>/...` (the ImageFolder layout `ingest` reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vistune.data.files import walk_class_files
from vistune.io import sha256_file


@dataclass(frozen=True)
class Arrivals:
    folder: str
    n_files: int  # labelled files seen
    new: list[str] = field(default_factory=list)  # relative paths of files with unseen bytes, sorted
    per_class: dict[str, int] = field(default_factory=dict)  # new files per class

    @property
    def n_new(self) -> int:
        return len(self.new)


def new_files(folder: Path, known_sha256: set[str]) -> Arrivals:
    """Labelled files under `folder` whose sha256 is not in `known_sha256`; hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"watched source {folder} is not a folder; point it at an ImageFolder (<class>/<image>)")
    seen, new, per_class = 0, [], {}
    for path, label in walk_class_files(folder, skip_hidden=True):
        if not path.is_file() or path.is_symlink():
            continue
        seen += 1
        if sha256_file(path) not in known_sha256:
            new.append(path.relative_to(folder).as_posix())
            per_class[label] = per_class.get(label, 0) + 1
    return Arrivals(str(folder), seen, sorted(new), per_class)
