"""The served network as an ONNX graph: uint8 pixels in, logits out, padding as constants.

EfficientNet-Lite's TF-"same" convolutions (timm `Conv2dSame`) compute their padding from the
input's shape at run time; traced into ONNX that is a Shape -> Gather -> ... -> Pad chain in front
of every strided convolution, which ONNX Runtime cannot fold into the Conv and which its static
quantizer cannot handle. A vistune model always runs at one input size (`Classifier` resizes every
image to `image_size`), so `freeze_same_padding` turns each of those convolutions into a plain
`nn.Conv2d` behind a constant `nn.ZeroPad2d` (timm's own `pad_same_arg` computes the pads), and
`optimize` lets ONNX Runtime fold those pads into the Conv's `pads` attribute: the exported graph
is Conv/Clip/Add and the head only, with the batch axis left dynamic.

The file also carries the facts a consumer needs without the pipeline (`metadata_props`:
classes, image size), as `model.pt` does. onnx is imported lazily.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import torch
from torch import nn

from vistune.io import atomic_path
from vistune.models.backbones import Backbone

META_CLASSES = "vistune.classes"
META_IMAGE_SIZE = "vistune.image_size"


def _same_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    from timm.layers.conv2d_same import Conv2dSame

    return [(name, m) for name, m in model.named_modules() if isinstance(m, Conv2dSame)]


def freeze_same_padding(net: nn.Module, image_size: int) -> nn.Module:
    """A copy of `net` whose TF-"same" convolutions pad by constants computed at `image_size`."""
    from timm.layers.padding import pad_same_arg

    net = copy.deepcopy(net).cpu().eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, n=name: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
        for name, m in _same_convs(net)
    ]
    with torch.no_grad():
        net(torch.zeros(1, 3, image_size, image_size, dtype=torch.uint8))
    for h in hooks:
        h.remove()
    for name, m in _same_convs(net):
        conv = nn.Conv2d(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, 0, m.dilation, m.groups, bias=m.bias is not None
        )
        conv.load_state_dict(m.state_dict())
        pads = pad_same_arg(list(sizes[name]), list(m.kernel_size), list(m.stride), list(m.dilation))
        parent, _, leaf = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, nn.Sequential(nn.ZeroPad2d(pads), conv))
    return net


def optimize(src: bytes, dst: Path) -> None:
    """ONNX Runtime's basic (hardware-independent, standard-op) graph optimizations: constant
    folding turns the exporter's pad-computing subgraphs into constants, pad fusion merges each
    zero Pad into its Conv, batch norms are already folded by the exporter. Measured on
    EfficientNet-Lite0: 49 Conv, 33 Clip, 10 Add and the head remain, nothing else."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with atomic_path(dst) as tmp:
        opts.optimized_model_filepath = str(tmp)
        ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def set_metadata(path: Path, classes: list[str], image_size: int) -> None:
    """Write the classes and input size into the ONNX file's metadata (atomically)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in ((META_CLASSES, json.dumps(list(classes))), (META_IMAGE_SIZE, str(int(image_size)))):
        model.metadata_props.add(key=key, value=value)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def export_onnx(backbone: Backbone, image_size: int, path: Path, classes: list[str] | None = None) -> None:
    """Export the served module (`Backbone.net`: normalization + network) with uint8 input
    `images` (N x 3 x S x S, S fixed) and a dynamic batch axis: an ONNX consumer feeds raw pixels."""
    net = freeze_same_padding(backbone.net, image_size)
    dummy = torch.zeros(1, 3, image_size, image_size, dtype=torch.uint8)
    buf = io.BytesIO()
    torch.onnx.export(
        net,
        (dummy,),
        buf,
        dynamo=False,
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "n"}, "logits": {0: "n"}},
    )
    optimize(buf.getvalue(), path)
    if classes is not None:
        set_metadata(path, classes, image_size)
