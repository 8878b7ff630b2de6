"""The compress stage on the tiny trained model: every variant built, measured, gated; int8 really
integer and close to fp32 on real images; passing variants registered as sibling versions and
served by version, a variant that misses its gate not registered."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from stages import compress
from tests.conftest import REPO, free_port, stop_process_group, tiny_params_dict
from vistune.models.classifier import Classifier
from vistune.config import parse_params
from vistune.data.prepared import load_prepared
from vistune.io import read_json
from vistune.layout import Layout
from vistune.models.device_policy import predict_logits

ALL = ["onnx", "onnx_int8", "onnx_int8_dynamic", "pruned", "distilled"]


def _params(**compress_cfg):
    raw = tiny_params_dict()
    raw["compress"] = {**raw.get("compress", {}), **compress_cfg}
    return parse_params(raw)


@pytest.fixture(scope="module")
def compressed(trained_tiny, tmp_path_factory) -> tuple[Layout, pd.DataFrame]:
    """compress.run once on a copy of the tiny model. The student (ResNet-18) is larger than its
    EfficientNet-Lite0 teacher, so the distilled variant misses its gate whatever its accuracy."""
    lay = Layout(tmp_path_factory.mktemp("compressed"))
    shutil.copytree(trained_tiny.root, lay.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
    p = _params(
        enabled=True,
        variants=ALL,
        finetune_epochs=1,
        distill_epochs=1,
        prune_amount=0.6,
        latency_runs=3,
        student="timm:resnet18",
        calibration_images=40,
    )
    return lay, compress.run(p, lay).set_index("variant")


def test_disabled_writes_empty_outputs(trained_tiny, tmp_path):
    lay = Layout(tmp_path)
    shutil.copytree(trained_tiny.root, lay.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
    compress.run(_params(enabled=False), lay)
    assert read_json(lay.compress_metrics) == {"compress_enabled": False}
    assert pd.read_csv(lay.compress_report).empty
    assert list(pd.read_csv(lay.compress_report).columns) == compress.REPORT_COLUMNS


def test_variants_are_built_checked_and_gated(compressed):
    lay, table = compressed
    assert list(table.index) == ["fp32", *ALL]
    # ONNX computes the same function as torch
    assert table.loc["onnx", "max_abs_diff"] < 1e-3
    n_test = len(load_prepared(lay.prepared, splits=("test",)).splits["test"])
    assert abs(table.loc["onnx", "accuracy"] - table.loc["fp32", "accuracy"]) <= 1 / n_test  # at most a near-tie flips
    # static int8 quantizes every conv; dynamic int8 none of them
    assert table.loc["onnx_int8", "int8_conv"] == table.loc["onnx_int8", "conv"] == table.loc["onnx", "conv"] > 40
    assert table.loc["onnx_int8_dynamic", "int8_conv"] == 0
    assert table.loc["onnx", "size_mb"] / table.loc["onnx_int8", "size_mb"] >= 3.5
    # pruning really zeroed weights, and the saved file loads as a vistune model
    assert table.loc["pruned", "sparsity"] >= 0.59
    pruned = Classifier.load(lay.compress_models / "pruned.pt")
    w = torch.cat(
        [
            m.weight.flatten()
            for m in pruned.backbone.model.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
        ]
    )
    assert float((w == 0).float().mean()) >= 0.59
    assert table.loc["pruned", "gzip_mb"] < table.loc["fp32", "gzip_mb"]
    student = Classifier.load(lay.compress_models / "distilled.pt")
    x, _ = load_prepared(lay.prepared, splits=("test",)).tensors("test")
    assert predict_logits(student.backbone, x, torch.device("cpu")).shape == (len(x), len(student.classes))
    # the report: latency at batch 1 and 32, throughput, and each variant's gate with its reason
    assert np.isfinite(table[["p50_ms", "p95_ms", "p50_b32_ms", "p95_b32_ms"]].to_numpy()).all()
    assert (table.images_per_s > 0).all() and (table.p95_b32_ms >= table.p50_b32_ms).all()
    assert table.loc["fp32", "gate"] == "parent"
    assert table.loc["fp32", "speedup_b1"] == 0 and (table.drop(index="fp32").speedup_b1 > 0).all()  # re-timed pairs
    assert table.loc["distilled", "gate"] == "fail" and "larger than fp32" in table.loc["distilled", "gate_reason"]
    assert table.loc["onnx", "gate"] == "pass"  # same function, ~100x faster than eager torch at batch 1
    metrics = read_json(lay.compress_metrics)
    assert metrics["compress_enabled"] is True and metrics["onnx_int8_accuracy"] == pytest.approx(
        table.loc["onnx_int8", "accuracy"]
    )
    assert metrics["distilled_gate_passed"] == 0 and metrics["onnx_gate_passed"] == 1


def test_calibration_images_are_a_recorded_seeded_train_choice(compressed):
    lay, _ = compressed
    calib = pd.read_csv(lay.compress_dir / "calibration.csv")
    manifest = pd.read_csv(lay.manifest, dtype={"label": str})
    train = manifest[manifest.split == "train"].reset_index(drop=True)
    assert len(calib) == min(40, len(train)) and calib.train_row.is_unique
    assert list(calib.path) == list(train.path.iloc[calib.train_row])  # rows name real train files
    assert list(calib.label.astype(str)) == list(train.label.iloc[calib.train_row])


def test_int8_graph_is_integer(compressed):
    """Every Conv reads int8 per-channel weights and quantized activations (QDQ), and ONNX Runtime
    runs them as integer QLinearConv kernels."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, numpy_helper

    path = compressed[0].compress_models / "model_int8.onnx"
    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == compressed[1].loc["onnx", "conv"]
    for conv in convs:
        act, weight = producer[conv.input[0]], producer[conv.input[1]]
        assert act.op_type == "DequantizeLinear" and producer[act.input[0]].op_type == "QuantizeLinear"
        assert weight.op_type == "DequantizeLinear" and inits[weight.input[0]].data_type == TensorProto.INT8
        out_channels = inits[weight.input[0]].dims[0]
        assert numpy_helper.to_array(inits[weight.input[1]]).size == out_channels  # one scale per channel
    assert not any(t.data_type == TensorProto.FLOAT and len(t.dims) == 4 for t in graph.initializer)  # no fp32 kernels

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(path.with_name("int8_as_run.onnx"))
    ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    ran = Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
    path.with_name("int8_as_run.onnx").unlink()
    assert ran["QLinearConv"] == len(convs) and ran["Conv"] == 0


def _photo_crops(photos: list[np.ndarray], size: int, per_photo: int, seed: int) -> list[np.ndarray]:
    from vistune.data.preprocess import resize_rgb

    rng, out = np.random.default_rng(seed), []
    for img in photos:
        h, w, _ = img.shape
        for _ in range(per_photo):
            s = int(min(h, w) * rng.uniform(0.5, 0.9))
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            out.append(resize_rgb(img[y : y + s, x : x + s], size))
    return out


def test_int8_outputs_agree_with_fp32_on_real_photos(tmp_path):
    """The static int8 graph of a network that has learned (ImageNet Lite0 with its own 1000-class head)
    answers like fp32 on real photos (Grace Hopper, scikit-learn's two sample photos): per-image logit
    correlation >= 0.9 (measured 0.91-0.97; between different photos it is about 0), top-5 mostly shared,
    Grace Hopper still `military uniform`. Calibrated on other crops of the same photos. (The tiny
    fixture model is at chance, so its logits are near-constant and say nothing about quantization.)"""
    from matplotlib import cbook
    from sklearn.datasets import load_sample_images

    from tests.vistune.test_backbones import MILITARY_UNIFORM
    from vistune.data.imageio import decode_rgb
    from vistune.data.preprocess import resize_rgb
    from vistune.models import onnx_export, quantize
    from vistune.models.backbones import create_backbone
    from vistune.evaluate.variants import onnx_predictor

    b = create_backbone("timm:tf_efficientnet_lite0", 1000, "imagenet", head_rows=list(range(1000)))
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photos = [decode_rgb(f.read()), *load_sample_images().images]
    size = b.input_size
    calib = np.stack(_photo_crops(photos, size, 8, seed=0))
    check = np.stack([resize_rgb(p, size) for p in photos] + _photo_crops(photos, size, 3, seed=1))
    onnx_export.export_onnx(b, size, tmp_path / "fp32.onnx")
    quantize.quantize_static_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calib)
    ops = quantize.integer_ops(tmp_path / "int8.onnx")
    assert ops["int8_conv"] == ops["conv"] > 40  # every convolution int8
    fp32 = predict_logits(b, torch.from_numpy(check), torch.device("cpu")).numpy()
    int8 = onnx_predictor(tmp_path / "int8.onnx")(check)
    corr = [float(np.corrcoef(a, q)[0, 1]) for a, q in zip(fp32, int8)]
    assert min(corr) >= 0.9, corr
    top5 = [len(set(np.argsort(a)[-5:]) & set(np.argsort(q)[-5:])) for a, q in zip(fp32, int8)]
    assert np.mean(top5) >= 3, top5
    assert fp32[0].argmax() == int8[0].argmax() == MILITARY_UNIFORM
    assert np.abs(int8 - fp32).max() <= 0.25 * float(fp32.max() - fp32.min())


def _serve_png(params_file, root, version: str, png: bytes) -> dict:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "--params",
            str(params_file),
            "--root",
            str(root),
            "serve",
            "--version",
            version,
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        from tests.app.test_serve import _wait_ping

        url = f"http://127.0.0.1:{port}"
        _wait_ping(url, proc)
        body = {"dataframe_split": {"columns": ["image_b64"], "data": [[base64.b64encode(png).decode("ascii")]]}}
        req = urllib.request.Request(
            url + "/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["predictions"][0]
    finally:
        stop_process_group(proc)


def test_passing_variants_are_registered_siblings_without_alias(compressed, mlflow_cfg, tmp_path):
    import mlflow

    from integrations import tags as T, tracking
    from stages import register as register_stage
    from tests.integrations.registry_helpers import copy_layout, params_with, write_params_file
    from vistune.models.onnx_classifier import OnnxClassifier

    src, table = compressed
    lay = copy_layout(src, tmp_path / "lay")
    receipt = register_stage.run(params_with(mlflow_cfg), lay)
    passed = sorted(table.index[table.gate == "pass"])
    assert sorted(receipt["variants"]) == passed and "distilled" not in receipt["variants"]
    client = mlflow.MlflowClient(tracking.resolve_tracking_uri(mlflow_cfg, tmp_path))
    name, parent = mlflow_cfg.model_name, receipt["version"]
    assert receipt["promoted"] and str(client.get_model_version_by_alias(name, "champion").version) == parent
    for variant, version in receipt["variants"].items():
        mv = client.get_model_version(name, version)
        assert mv.tags[T.VARIANT] == variant and mv.tags[T.VARIANT_OF] == parent and not mv.aliases
        assert float(mv.tags[T.metric("variant_accuracy")]) == pytest.approx(table.loc[variant, "accuracy"])
    all_versions = client.search_model_versions(f"name='{name}'")
    assert len(all_versions) == 1 + len(passed)  # the failing variant made no version
    assert client.get_model_version(name, parent).tags[T.VARIANTS] == ", ".join(
        f"{k}=v{v}" for k, v in sorted(receipt["variants"].items())
    )
    again = register_stage.run(params_with(mlflow_cfg), lay)  # idempotent: nothing registered twice
    assert again["reused"] and again["variants"] == receipt["variants"]
    assert len(client.search_model_versions(f"name='{name}'")) == len(all_versions)
    from app import card  # the parent's model card lists every variant, its gate and its version

    html = card.fetch(client, name, parent, tmp_path / "card.html").read_text()
    rows = html.split('<table id="variants">')[1].split("</table>")[0].split("<tr>")[2:]
    shown = {r.split("<td>")[1].split("</td>")[0]: r for r in rows}
    assert set(shown) == set(table.index)
    for variant in table.index:
        registered = receipt["variants"].get(variant)
        assert (f"<td>v{registered}</td>" in shown[variant]) if registered else ("<td>-</td>" in shown[variant])
        assert f"<td>{table.loc[variant, 'gate']}" in shown[variant]

    # served by version, same request format, same answer as the ONNX file itself
    manifest = pd.read_csv(lay.manifest, dtype={"label": str})
    png = (lay.raw / manifest[manifest.split == "test"].path.iloc[0]).read_bytes()
    version = receipt["variants"]["onnx"]
    pred = _serve_png(write_params_file(tmp_path / "params.yaml", mlflow_cfg), tmp_path, version, png)
    temperature = json.loads(lay.calibration.read_text())["temperature"]
    labels, probs = OnnxClassifier.load(lay.compress_models / "model.onnx", temperature=temperature).predict_bytes(
        [png]
    )
    assert pred["label"] == labels[0]
    assert [pred[f"p_{c}"] for c in json.loads((lay.prepared / "meta.json").read_text())["classes"]] == pytest.approx(
        probs[0].tolist(), abs=1e-5
    )


def test_unknown_variant_is_a_clear_error(trained_tiny):
    from vistune.errors import ConfigError

    with pytest.raises(ConfigError, match="compress.variants"):
        compress.run(
            dataclasses.replace(_params(), compress=dataclasses.replace(_params().compress, variants=("zip",))),
            trained_tiny,
        )


@pytest.mark.parametrize("strategy", ["linear_probe", "partial"])
def test_a_pretrained_student_starts_from_its_offline_weights(trained_tiny, tmp_path, strategy):
    """`student_pretrained: imagenet` loads the offline ImageNet weights the way `train.pretrained` does: the
    layers the strategy freezes are still exactly those weights after distillation, the trained ones moved,
    the saved file keeps the student's own normalization, and the variant is measured and gated beside fp32."""
    from vistune.models.backbones import create_backbone

    lay = Layout(tmp_path)
    shutil.copytree(trained_tiny.root, lay.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
    p = _params(
        enabled=True,
        variants=["distilled"],
        student="timm:tf_efficientnet_lite0",
        student_pretrained="imagenet",
        distill_strategy=strategy,
        distill_unfreeze_blocks=1,
        distill_epochs=1,
        latency_runs=2,
    )
    table = compress.run(p, lay).set_index("variant")
    assert list(table.index) == ["fp32", "distilled"] and table.loc["distilled", "gate"] in ("pass", "fail")
    student = Classifier.load(lay.compress_models / "distilled.pt")
    imagenet = create_backbone("timm:tf_efficientnet_lite0", len(student.classes), "imagenet")
    assert student.backbone.mean == imagenet.mean == (0.5, 0.5, 0.5)  # the offline weights' own normalization
    got, start = student.backbone.model.state_dict(), imagenet.model.state_dict()
    assert torch.equal(got["conv_stem.weight"], start["conv_stem.weight"])  # frozen: still ImageNet's
    assert torch.equal(got["blocks.0.0.bn1.running_mean"], start["blocks.0.0.bn1.running_mean"])
    assert not torch.equal(got["classifier.weight"], start["classifier.weight"])  # the head trained
    last_block = [k for k in got if k.startswith("blocks.6.") and k.endswith("conv_pw.weight")][0]
    assert torch.equal(got[last_block], start[last_block]) == (strategy == "linear_probe")


def test_the_gate_judges_speed_on_the_paired_timing():
    """A variant timed beside fp32 (`speedup_b1`) is judged on that ratio, not on the two p50s taken minutes
    apart under different loads; without it the p50s decide."""
    from vistune.evaluate.variants import VariantReport, variant_gate as gate

    parent = VariantReport("fp32", 0.90, 10.0, 9.0, p50_ms=5.0, p95_ms=6.0)
    late = VariantReport(
        "distilled", 0.90, 10.0, 9.0, p50_ms=50.0, p95_ms=60.0, speedup_b1=2.0
    )  # timed in a busy minute
    assert gate(late, parent, 0.01, 0.1) == ""
    slow = dataclasses.replace(late, p50_ms=1.0, speedup_b1=0.5)
    assert "batch-1 latency 2.00x fp32's (timed in alternation with fp32)" in gate(slow, parent, 0.01, 0.1)
    assert "neither smaller nor faster" in gate(slow, parent, 0.01, 1.5)
    unpaired = dataclasses.replace(late, speedup_b1=0.0)
    assert "batch-1 latency 10.00x fp32's (fp32's p50 5.00 ms)" in gate(unpaired, parent, 0.01, 0.1)
    worse = dataclasses.replace(late, accuracy=0.88)
    assert gate(worse, parent, 0.01, 0.1).startswith("accuracy 0.8800 is more than compress.max_drop=0.01")
    assert gate(worse, parent, 0.02, 0.1) == ""
