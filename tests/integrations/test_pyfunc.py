"""The registered pyfunc, loaded back by alias, on real image bytes (raw, base64, path)."""

from __future__ import annotations

import base64
import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from integrations import tracking
from integrations.pyfunc_model import InputError
from vistune.models.classifier import Classifier
from vistune.layout import Layout

from tests.integrations.registry_helpers import register


@pytest.fixture(scope="module")
def champion(trained_tiny: Layout, tmp_path_factory):
    """(loaded pyfunc, trained layout, test image paths) with a champion in a fresh store."""
    from tests.conftest import tiny_register_cfg

    tmp = tmp_path_factory.mktemp("pyfunc")
    cfg = tiny_register_cfg(tmp)
    receipt = register(trained_tiny, tmp / "lay", cfg)
    assert receipt["promoted"]
    tracking.setup(cfg, tmp)
    model = mlflow.pyfunc.load_model("models:/vistune-classifier@champion")
    manifest = pd.read_csv(trained_tiny.manifest, dtype={"label": str})
    paths = [trained_tiny.raw / p for p in manifest[manifest.split == "test"].path.iloc[:3]]
    return model, trained_tiny, paths


def test_round_trip_raw_base64_and_path_agree_with_classifier(champion, monkeypatch):
    model, lay, paths = champion
    monkeypatch.setenv("VISTUNE_IMAGE_ROOT", str(lay.raw))  # `path` inputs are confined to this folder
    blobs = [p.read_bytes() for p in paths]
    by_bytes = model.predict(pd.DataFrame({"image": blobs}))
    by_b64 = model.predict(pd.DataFrame({"image_b64": [base64.b64encode(b).decode() for b in blobs]}))
    by_path = model.predict(pd.DataFrame({"path": [str(p) for p in paths]}))
    temperature = json.loads(lay.calibration.read_text())["temperature"]
    labels, probs = Classifier.load(lay.model, temperature=temperature).predict_bytes(blobs)
    for out in (by_bytes, by_b64, by_path):
        assert out["label"].tolist() == labels
        pcols = [c for c in out.columns if c.startswith("p_")]
        assert pcols == [f"p_{c}" for c in json.loads((lay.prepared / "meta.json").read_text())["classes"]]
        np.testing.assert_allclose(out[pcols].to_numpy(), probs, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out[pcols].sum(axis=1), 1.0, atol=1e-5)
        assert (out["confidence"] == out[pcols].max(axis=1)).all()


def test_temperature_is_applied(champion):
    model, lay, paths = champion
    blob = paths[0].read_bytes()
    temperature = json.loads(lay.calibration.read_text())["temperature"]
    assert temperature != pytest.approx(1.0)  # fitted on val, so the check below means something
    _, raw = Classifier.load(lay.model).predict_bytes([blob])
    served = model.predict(pd.DataFrame({"image": [blob]}))
    pcols = [c for c in served.columns if c.startswith("p_")]
    assert not np.allclose(served[pcols].to_numpy(), raw, atol=1e-6)


def test_signature_and_input_example(champion):
    model, _, _ = champion
    meta = model.metadata
    assert [c.name for c in meta.get_input_schema().inputs] == ["image_b64", "image", "path"]
    assert [c.name for c in meta.get_output_schema().inputs][:2] == ["label", "confidence"]
    assert meta.saved_input_example_info["type"] == "dataframe"


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"image": [b"definitely not an image"]}), r"^row 0: not a usable image: .*; send the original"),
        (pd.DataFrame({"image_b64": ["%%% not base64 %%%"]}), r"^row 0: image_b64 is not valid base64; send the image"),
        (
            pd.DataFrame({"image_b64": [base64.b64encode(b"x" * 9).decode(), "%%"]}),
            r"^row 1: image_b64 is not valid base64",
        ),
        (pd.DataFrame({"path": ["no/such/file.png"]}), r"^row 0: cannot read path 'no/such/file.png' \(No such file"),
        (pd.DataFrame({"path": ["/etc/passwd"]}), r"^row 0: path '/etc/passwd' is outside the server's image root; "),
        (pd.DataFrame({"path": ["../../../../../../etc/passwd"]}), r"^row 0: path '\.\./.*' is outside the server's"),
        (
            pd.DataFrame({"picture": ["x"]}),  # MLflow's schema check drops columns outside the signature
            r"^input needs one of the columns \['image_b64', 'image', 'path'\]; the request had none of them$",
        ),
        (pd.DataFrame({"image_b64": [None]}), r"^row 0: no image given"),
        (
            pd.DataFrame({"image_b64": pd.Series([], dtype=object)}),
            r"^the request has no rows; send one row per image$",
        ),
    ],
)
def test_malformed_input_gives_a_clear_error(champion, frame, message, tmp_path, monkeypatch):
    model, _, _ = champion
    monkeypatch.setenv("VISTUNE_IMAGE_ROOT", str(tmp_path))
    with pytest.raises(InputError, match=message) as err:
        model.predict(frame)
    assert isinstance(err.value, ValueError) and err.value.get_http_status_code() == 400  # what `serve` answers
    assert str(tmp_path) not in err.value.message  # no server path in an answer


def test_a_bad_row_among_good_ones_is_named(champion):
    model, _, paths = champion
    good = paths[0].read_bytes()
    with pytest.raises(InputError, match=r"^row 2: not a usable image: "):
        model.predict(pd.DataFrame({"image": [good, good, good[: len(good) // 3], good]}))
    assert len(model.predict(pd.DataFrame({"image": [good, good]}))) == 2


def test_symlink_out_of_the_image_root_is_refused(champion, tmp_path, monkeypatch):
    model, _, paths = champion
    root = tmp_path / "images"
    root.mkdir()
    (root / "inside.png").write_bytes(paths[0].read_bytes())
    (root / "escape.png").symlink_to(paths[0])  # a real image, but outside the root
    monkeypatch.setenv("VISTUNE_IMAGE_ROOT", str(root))
    assert len(model.predict(pd.DataFrame({"path": ["inside.png"]}))) == 1  # relative to the root
    with pytest.raises(InputError, match=r"^row 0: path 'escape.png' is outside the server's image root"):
        model.predict(pd.DataFrame({"path": ["escape.png"]}))


def test_downloaded_model_is_verified_before_loading(champion, tmp_path):
    """A registered model whose weights changed after logging is refused by load_context."""
    from vistune.errors import WeightsError

    local = mlflow.artifacts.download_artifacts("models:/vistune-classifier@champion", dst_path=str(tmp_path))
    mlmodel = (tmp_path / "MLmodel").read_text() if (tmp_path / "MLmodel").exists() else ""
    assert "model_sha256" in mlmodel
    weights = next(p for p in (tmp_path / "artifacts").iterdir() if p.suffix == ".pt")
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="does not match the model's MLmodel model_config.model_sha256"):
        mlflow.pyfunc.load_model(local)
