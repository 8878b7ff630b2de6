"""The repository's shape: dvc.yaml agrees with Layout, and mlflow/ never shadows the real mlflow."""

from pathlib import Path

import yaml

from vistune.layout import Layout

REPO = Path(__file__).resolve().parent.parent


def _declared_paths() -> set[str]:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    paths = set()
    for body in dvc["stages"].values():
        for section in ("outs", "metrics", "plots"):
            for item in body.get(section, []):
                paths.add(next(iter(item)) if isinstance(item, dict) else item)
    return paths


def test_every_layout_output_is_declared_in_dvc_yaml():
    lay = Layout(Path("."))
    declared = _declared_paths()
    outputs = [
        lay.raw,
        lay.manifest,
        lay.quarantine,
        lay.validation_summary,
        lay.validation_docs,
        lay.prepared,
        lay.augment_preview,
        lay.model,
        lay.train_metrics,
        lay.train_history,
        lay.eval_metrics,
        lay.predictions,
        lay.confusion_png,
        lay.class_report,
        lay.registration,
        lay.compress_models,
        lay.compress_report,
        lay.compress_metrics,
        lay.drift,
        lay.drift_reference,
        lay.label_issues,
        lay.label_issue_sheet,
    ]
    missing = [str(p) for p in outputs if str(p) not in declared]
    assert not missing, f"outputs written by stages but not declared in dvc.yaml: {missing}"
    assert str(lay.checkpoint.parent) in declared


def test_every_stage_cmd_is_a_stage_module():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, body in dvc["stages"].items():
        assert body["cmd"] == f"python -m stages.{name}"
        assert (REPO / "stages" / f"{name}.py").is_file()
        assert f"stages/{name}.py" in body["deps"]


def test_mlflow_dir_is_not_a_package_and_real_mlflow_imports():
    assert not (REPO / "mlflow" / "__init__.py").exists()
    import mlflow

    assert "site-packages" in mlflow.__file__


def test_core_does_not_import_orchestration_or_tracking():
    for f in (REPO / "vistune").rglob("*.py"):
        text = f.read_text()
        for banned in (
            "import mlflow",
            "import prefect",
            "import dvc",
            "from mlflow",
            "from prefect",
            "from dvc",
            "great_expectations",
        ):
            assert banned not in text, f"{f.name} imports {banned!r}: the core must stay torch/numpy/pandas only"


def test_flow_runs_every_dvc_stage_in_order():
    from flows.dvc_cli import STAGES

    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert list(STAGES) == list(dvc["stages"]), "flows.dvc_cli.STAGES must list dvc.yaml's stages in order"


# third-party libraries the core may import. scikit-learn (metrics, the digits source) and scipy (McNemar)
# stand in for hand-written statistics; they are imported inside the functions that use them, so a
# served model or a training run never loads them.
CORE_LIBRARIES = {
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "pandas",
    "PIL",
    "yaml",
    "tqdm",
    "matplotlib",
    "onnxruntime",
    "onnx",
    "sklearn",
    "scipy",
    "threadpoolctl",
}
# threadpoolctl (a scikit-learn dependency): one BLAS thread for label issues' K-fold fits
LAZY_ONLY = {"sklearn", "scipy", "onnx", "threadpoolctl"}  # onnx: graph edits and checks in compress only


def _core_imports() -> dict[str, list[tuple[str, bool]]]:
    """top-level module -> [(file, imported at module level?)] for every non-stdlib import in vistune/."""
    import ast
    import sys

    found: dict[str, list[tuple[str, bool]]] = {}
    for f in (REPO / "vistune").rglob("*.py"):
        tree = ast.parse(f.read_text())
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("vistune", "__future__"):
                    found.setdefault(top, []).append((str(f.relative_to(REPO)), id(node) in top_level))
    return found


def test_core_imports_only_its_libraries_and_statistics_lazily():
    found = _core_imports()
    assert set(found) <= CORE_LIBRARIES, f"vistune/ imports {sorted(set(found) - CORE_LIBRARIES)}"
    eager = [(lib, f) for lib in LAZY_ONLY for f, at_top in found.get(lib, []) if at_top]
    assert not eager, f"import these inside the function that needs them: {eager}"
