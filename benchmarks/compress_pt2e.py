"""Candidate (b) for static int8: PyTorch PT2E with the X86InductorQuantizer, measured against (a) ORT QDQ.

torch 2.14 no longer ships `torch.ao.quantization.quantize_pt2e`; it lives in torchao (not a
vistune dependency). Run with torchao importable, e.g. `pip install --target /tmp/torchao_pkg
--no-deps torchao` and `PYTHONPATH=$PWD:/tmp/torchao_pkg`:

    python benchmarks/compress_pt2e.py --root /tmp/vt_demo/root

Exports `Backbone.net` with a dynamic batch axis (the same constant-padding network as the ONNX export),
calibrates on the same seeded train images as `onnx_int8`, converts, compiles with inductor
(the lowering that makes the int8 ops real), and prints test accuracy, p50/p95 at batch 1 and 32
(one compiled graph per batch size), compile time; JSON to benchmarks/results/compress_pt2e.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_result  # noqa: E402
from vistune.config import load_params  # noqa: E402
from vistune.data.prepared import load_prepared  # noqa: E402
from vistune.layout import Layout  # noqa: E402
from vistune.evaluate.latency import latency  # noqa: E402
from vistune.models.classifier import Classifier  # noqa: E402
from vistune.models.onnx_export import freeze_same_padding  # noqa: E402
from vistune.models.quantize import calibration_indices  # noqa: E402


def quantized(net: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor) -> torch.nn.Module:
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    batch = torch.export.Dim("n", min=1, max=1024)
    gm = torch.export.export(net, (example,), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(gm, quantizer)
    with torch.no_grad():
        for i in range(0, len(calib), 32):
            prepared(calib[i : i + 32])
    return convert_pt2e(prepared)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    cfg = load_params(args.params).compress
    layout = Layout(args.root)
    clf = Classifier.load(layout.model)
    data = load_prepared(layout.prepared)
    xt, yt = data.tensors("train")
    calib = xt[torch.from_numpy(calibration_indices(len(yt), cfg.calibration_images, cfg.seed))]  # uint8, as served
    x, y = data.tensors("test")
    net = freeze_same_padding(clf.backbone.net, clf.image_size).eval()
    t0 = time.perf_counter()
    qnet = quantized(net, calib[:32], calib)
    quantize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = torch.compile(qnet)
    with torch.no_grad():
        logits = torch.cat([compiled(x[i : i + 32]) for i in range(0, len(x), 32)])
        compiled(x[:1])
        compile_s = time.perf_counter() - t0
        acc = float((logits.argmax(1) == y).float().mean())
        lat = latency(lambda b: compiled(torch.from_numpy(b)).numpy(), x.numpy(), cfg.latency_runs)
    row = {
        "variant": "pt2e_x86_inductor_int8",
        "accuracy": acc,
        "quantize_s": quantize_s,
        "compile_s": compile_s,
        **vars(lat),
    }
    print(row)
    write_result(
        Path(__file__).parent / "results" / "compress_pt2e.json",
        {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_avg": os.getloadavg(),
            "torch": torch.__version__,
            "rows": [row],
        },
    )


if __name__ == "__main__":
    main()
