"""Names and walks of files under a data root, shared by `ingest` (sources) and `validate` (manifest).

One place decides what a safe file name is (UTF-8, relative, no `..`), whether a path with its links
resolved stays under its root, how an undecodable name is shown, and the order class folders are walked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Iterator


def is_utf8(name: str) -> bool:
    """False for names os.fsdecode turned undecodable bytes into surrogates for."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def printable_name(rel: str) -> str:
    """The name as valid UTF-8 for CSV/JSON: undecodable bytes shown as \\xNN."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def name_is_safe(rel: str) -> bool:
    """UTF-8 encodable and no `..` component."""
    return is_utf8(rel) and ".." not in Path(rel).parts


def relative_name_problem(name: str, what: str = "archive member", root: str = "the archive root") -> str | None:
    """Why a relative name (`a/b.png`, archive member or manifest path) may not be used, or None."""
    if not is_utf8(name):
        return f"{what} name is not valid UTF-8"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return f"{what} has an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return f"{what} escapes {root} ('..' path traversal)"
    return None


def join_relative(base: Path, name: str) -> Path:
    """`base` joined with a `/` or `\\` separated relative name."""
    return base.joinpath(*PurePosixPath(name.replace("\\", "/")).parts)


def is_within(path: Path | str, root_real: str) -> bool:
    """Does the path, links resolved, stay under the (already resolved, os.path.realpath) root?"""
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def is_inside(path: Path, root: Path) -> bool:
    """`is_within` for a root not resolved yet."""
    return is_within(path, os.path.realpath(root))


def walk_class_files(split_dir: Path, skip_hidden: bool = False) -> Iterator[tuple[Path, str]]:
    """(file, class) for every file under `split_dir/<class>/...`, sorted; links listed, never followed."""
    def keep(name: str) -> bool:
        return not (skip_hidden and name.startswith("."))

    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and keep(p.name)):
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if keep(d))
            for fname in sorted(filenames):
                if keep(fname):
                    yield Path(dirpath) / fname, class_dir.name
