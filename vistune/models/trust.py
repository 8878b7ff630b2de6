"""sha256 checks for weights that come from outside the pipeline, before `torch.load` sees them.

`weights_only=True` stops code execution, not a swapped file: a user's checkpoint, a package's
ImageNet weights and a registered model are each compared with a pinned digest first
(torch.hub's `check_hash` idea, with the whole digest instead of a filename prefix).
"""

from __future__ import annotations

from pathlib import Path

from vistune.errors import WeightsError
from vistune.io import sha256_file


def verify_sha256(path: Path, expected: str, setting: str) -> str:
    """The file's sha256 if it equals `expected`; else one WeightsError line naming the file and the fix.

    `setting` names where the digest is pinned (e.g. `train.pretrained_sha256`); an empty
    `expected` is refused too, and the error prints the digest to pin once the file is trusted.
    """
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found; fix the path or set train.pretrained to imagenet or none")
    actual = sha256_file(path)
    if not expected:
        raise WeightsError(
            f"{path}: weights from outside the pipeline are verified before use; {setting} is empty "
            f"(set {setting}: {actual} if you trust this file)"
        )
    if actual != expected.strip().lower():
        raise WeightsError(
            f"{path}: sha256 {actual} does not match {setting} {expected}; the file changed or is "
            f"not the one pinned: re-download it or update {setting}"
        )
    return actual
