"""int8 ONNX models: static calibrated QDQ (every Conv, the default) and dynamic (MatMul/Gemm only).

Static quantization runs the fp32 graph over calibration images (a seeded choice from the train
split, `calibration_indices`) to fix each activation's int8 range once, then stores every Conv and
Gemm weight as int8 per output channel and brackets each op with QuantizeLinear/DequantizeLinear;
ONNX Runtime's CPU kernels run those QDQ groups as integer convolutions (uint8 activations x int8
weights, the x86 VNNI layout ORT's `quantize_static` recommends). It needs the constant-padding
export of `vistune.models.onnx_export`: with TF-"same" padding computed at run time the quantizer
meets Shape/Gather chains between the convs.

Dynamic quantization (the older `onnx_int8` variant) quantizes only MatMul/Gemm: measured on the
digits EfficientNet-Lite0, dynamic int8 on the (depthwise) convolutions dropped test accuracy from
0.97 to 0.10 (activation ranges guessed per batch), so it leaves every conv in fp32.

onnx / onnxruntime are imported lazily: the rest of the core never needs them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np

from vistune.io import atomic_path

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def calibration_indices(n_train: int, count: int, seed: int) -> np.ndarray:
    """`count` train-split rows (all when there are fewer), chosen by `seed`, in ascending order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_train, size=min(count, n_train), replace=False))


def _reader(images: np.ndarray, batch_size: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        """Feeds the calibration images to the fp32 graph, `batch_size` at a time."""

        def __init__(self) -> None:
            self._it: Iterator[dict] = (
                {"images": np.ascontiguousarray(images[i : i + batch_size], dtype=np.uint8)}
                for i in range(0, len(images), batch_size)
            )

        def get_next(self) -> dict | None:
            return next(self._it, None)

    return Batches()


def quantize_static_int8(
    src: Path, dst: Path, images: np.ndarray, method: str = "minmax", batch_size: int = 32
) -> None:
    """Static QDQ int8 of the whole graph: per-channel int8 weights, uint8 activations whose ranges
    come from `images` (uint8 N x 3 x S x S) run through `src` with calibration `method`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}; valid: {list(CALIBRATION_METHODS)}")
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    with atomic_path(dst) as tmp:
        quantize_static(
            str(src),
            str(tmp),
            _reader(images, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
        )


def quantize_dynamic_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 for MatMul/Gemm only (see the module docstring for why convs stay fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(dst) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])


def integer_ops(path: Path) -> dict[str, int]:
    """How much of the graph runs in int8: `conv` = Conv nodes, `int8_conv` = those whose input comes
    through DequantizeLinear and whose weight is an int8 initializer behind DequantizeLinear (QDQ),
    plus QLinearConv / ConvInteger nodes (the operator formats), and `int8_weights` = int8 initializers."""
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(path)).graph
    int8 = {t.name for t in graph.initializer if t.data_type == TensorProto.INT8}
    producer = {out: node for node in graph.node for out in node.output}

    def dequantized(name: str, from_int8: bool) -> bool:
        node = producer.get(name)
        return node is not None and node.op_type == "DequantizeLinear" and (not from_int8 or node.input[0] in int8)

    ops = Counter(n.op_type for n in graph.node)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    qdq = sum(dequantized(n.input[0], False) and dequantized(n.input[1], True) for n in convs)
    return {
        "conv": len(convs) + ops["QLinearConv"] + ops["ConvInteger"],
        "int8_conv": qdq + ops["QLinearConv"] + ops["ConvInteger"],
        "int8_weights": len(int8),
    }
