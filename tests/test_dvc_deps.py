"""`dvc.yaml` deps cover the code each stage runs, so editing any module a stage imports reruns that stage.

The import graph is read statically (every `import` anywhere in a module, lazy ones inside functions
included) starting from `stages/<name>.py`, so the check needs no heavy imports and errs on the side of
listing too much rather than too little."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vistune", "stages", "integrations", "flows", "app")


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imported(path: Path, module: str) -> set[str]:
    """Fully qualified in-repo module names `path` imports (a `from pkg import mod` counts as pkg.mod)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def stage_modules(stage: str) -> set[Path]:
    """Every in-repo source file `python -m stages.<stage>` can import, parents' `__init__` included."""
    seen: set[str] = set()
    todo = [f"stages.{stage}"]
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            parent = ".".join(parts[:i])
            path = _module_file(parent)
            if path is None or parent in seen:
                continue
            seen.add(parent)
            todo.extend(_imported(path, parent))
    return {_module_file(m).relative_to(ROOT) for m in seen}


def _covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_every_module_it_imports(stage: str) -> None:
    deps = [d if isinstance(d, str) else next(iter(d)) for d in _stages()[stage].get("deps", [])]
    missing = sorted(str(p) for p in stage_modules(stage) if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs code its deps do not list: {missing}"


def test_import_graph_follows_lazy_and_package_imports() -> None:
    """The reader itself: train's closure holds the training loop, preprocessing and the package inits."""
    mods = {str(p) for p in stage_modules("train")}
    assert {
        "stages/train.py",
        "stages/cli.py",
        "vistune/train/loop.py",
        "vistune/data/preprocess.py",
        "vistune/__init__.py",
        "vistune/train/__init__.py",
    } <= mods
    assert not any(m.startswith("flows/") for m in mods)
