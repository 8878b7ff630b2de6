"""Each strategy trains exactly the parameters it should (counted), across architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vistune.models.backbones import create_backbone
from vistune.config import TrainCfg
from vistune.errors import ConfigError
from vistune.train.finetune import create_strategy, layer_ids, list_strategies
from vistune.models.lora import LORA_TYPES

SPECS = ["timm:resnet10t", "timm:test_vit", "timm:tf_efficientnet_lite0", "torchvision:mobilenet_v3_small"]


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def trainable(spec: str, strategy: str, **cfg):
    torch.manual_seed(0)
    b = create_backbone(spec, 3, "none")
    s = create_strategy(strategy, TrainCfg(**cfg))
    groups = s.param_groups(b, 0.05)
    in_groups = sum(p.numel() for g in groups for p in g["params"])
    flagged = sum(p.numel() for p in b.model.parameters() if p.requires_grad)
    assert in_groups == flagged  # the optimizer sees exactly what requires grad
    return b, s, groups, in_groups


def test_registry_lists_all_and_rejects_unknown():
    assert list_strategies() == ["bitfit", "full", "linear_probe", "lora", "partial"]
    with pytest.raises(ConfigError, match="valid"):
        create_strategy("nope")


@pytest.mark.parametrize("spec", SPECS)
def test_linear_probe_and_full(spec):
    b, _, _, n = trainable(spec, "linear_probe")
    assert n == count(b.head_module())
    b, _, _, n = trainable(spec, "full")
    assert n == count(b.model)


def test_partial_resnet_efficientnet_vit_torchvision():
    b, _, _, n = trainable("timm:resnet10t", "partial", unfreeze_blocks=1)
    assert n == count(b.model.layer4) + count(b.model.fc)
    b, _, _, n = trainable("timm:resnet10t", "partial", unfreeze_blocks=2)
    assert n == count(b.model.layer3) + count(b.model.layer4) + count(b.model.fc)
    b, _, _, n = trainable("timm:tf_efficientnet_lite0", "partial", unfreeze_blocks=2)
    m = b.model
    assert n == count(m.blocks[5]) + count(m.blocks[6]) + count(m.conv_head) + count(m.bn2) + count(m.classifier)
    b, _, _, n = trainable("timm:test_vit", "partial", unfreeze_blocks=1)
    m = b.model
    assert n == count(m.blocks[-1]) + count(m.norm) + count(m.fc_norm) + count(m.head)
    b, _, _, n = trainable("torchvision:mobilenet_v3_small", "partial", unfreeze_blocks=1)
    assert n == count(b.model.features[-1]) + count(b.model.classifier)
    with pytest.raises(ConfigError, match="unfreeze_blocks"):
        trainable("timm:resnet10t", "partial", unfreeze_blocks=5)


def test_partial_keeps_frozen_batchnorm_statistics():
    b, s, _, _ = trainable("timm:resnet10t", "partial", unfreeze_blocks=1)
    s.set_train_mode(b)
    assert not b.model.layer1[0].bn1.training and b.model.layer4[0].bn1.training


def test_bitfit_counts_biases_and_head():
    b, _, _, n = trainable("timm:tf_efficientnet_lite0", "bitfit")
    biases = sum(
        p.numel() for k, p in b.model.named_parameters() if k.endswith(".bias") and not k.startswith("classifier")
    )
    assert biases > 0 and n == biases + count(b.model.classifier)


def test_lora_counts_adapters_and_merges_exactly():
    torch.manual_seed(0)
    plain = create_backbone("timm:resnet10t", 3, "none")
    rank = 4
    expect = count(plain.model.fc)
    for name, m in plain.model.named_modules():
        if name == "fc":
            continue
        if isinstance(m, nn.Linear):
            expect += rank * (m.in_features + m.out_features)
        elif isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1:
            expect += rank * (m.in_channels + m.out_channels)
    b, s, _, n = trainable("timm:resnet10t", "lora", lora_rank=rank, lora_alpha=8.0)
    assert n == expect and any(isinstance(m, LORA_TYPES) for m in b.model.modules())
    s.param_groups(b, 0.05)  # idempotent: no adapters on adapters
    assert sum(p.numel() for p in b.model.parameters() if p.requires_grad) == expect
    with torch.no_grad():
        for k, p in b.model.named_parameters():
            if k.endswith("lora_b"):
                p.normal_(0, 0.05)  # a trained-looking update
    x = torch.randn(2, 3, 32, 32)
    b.model.eval()
    merged = create_backbone("timm:resnet10t", 3, "none")
    merged.model.load_state_dict(s.export_state_dict(b.model))
    merged.model.eval()
    assert torch.allclose(b.model(x), merged.model(x), atol=1e-4)


def test_layer_decay_scales_lr_by_depth():
    b, _, groups, _ = trainable("timm:resnet10t", "full", layer_decay=0.5)
    ids, top = layer_ids(b)
    assert top == 5 and ids["conv1.0.weight"] == 0 and ids["layer4.0.conv1.weight"] == 4 and ids["fc.weight"] == 5
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    params = dict(b.model.named_parameters())
    assert scale[id(params["fc.weight"])] == 1.0
    assert scale[id(params["layer4.0.conv1.weight"])] == 0.5
    assert scale[id(params["conv1.0.weight"])] == 0.5**5
    nodecay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(params["fc.bias"]) in nodecay and id(params["fc.weight"]) not in nodecay
