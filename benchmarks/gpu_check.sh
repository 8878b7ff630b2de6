#!/usr/bin/env bash
# One prepared GPU check for vistune (<= 8 min on one H200), needing only torch / timm / numpy / PIL there:
#   1. the CUDA tests (pytest -m gpu: no host sync in the step loop, bf16 + fp16, compile, channels_last, resume);
#   2. benchmarks/train_throughput.py for EfficientNet-Lite0 and ResNet-50 at 224 px (ceiling / vistune /
#      tutorial loop / same-recipe loader, JSON each);
#   3. one summary table.
# It installs nothing. Where pytest or the data set are missing on the GPU box, pack them here first:
#   benchmarks/gpu_check.sh --pack     # copies pytest (+ pluggy, iniconfig, packaging) and hymenoptera/train to .run/
# and carry .run/gpu_pylib and .run/gpu_data with the working tree. Weights are random init on the GPU box
# (offline, no ImageNet download there): throughput does not depend on them.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-benchmarks/results/gpu}
DATA=${DATA:-../shared/datasets/hymenoptera/train}

if [ "${1:-}" = "--pack" ]; then
  site=$($PY -c 'import pytest, os; print(os.path.dirname(os.path.dirname(pytest.__file__)))')
  mkdir -p .run/gpu_pylib .run/gpu_data
  for m in _pytest pytest pluggy iniconfig packaging py.py; do cp -r "$site/$m" .run/gpu_pylib/ 2>/dev/null; done
  rm -rf .run/gpu_data/hymenoptera_train && cp -r "$DATA" .run/gpu_data/hymenoptera_train
  du -sh .run/gpu_pylib .run/gpu_data
  exit 0
fi

[ -d "$DATA" ] || DATA=.run/gpu_data/hymenoptera_train
$PY -c 'import pytest' 2>/dev/null || export PYTHONPATH=".run/gpu_pylib${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
mkdir -p "$OUT"
$PY - <<'PY'
import torch, timm
print(f"torch {torch.__version__}  timm {timm.__version__}  cuda {torch.version.cuda}  "
      f"device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'NONE'}  "
      f"bf16 {torch.cuda.is_available() and torch.cuda.is_bf16_supported()}", flush=True)
PY

start=$(date +%s)
timeout 300 $PY -m pytest tests/gpu -m gpu -q -p no:cacheprovider -o addopts="" -rA 2>&1 | tee "$OUT/gpu_tests.log" | tail -40
tests_rc=${PIPESTATUS[0]}
tests_s=$(( $(date +%s) - start ))

bench() {  # name model batch
  timeout 150 $PY benchmarks/train_throughput.py --device cuda --model "$2" --pretrained none --image-size 224 \
    --data "$DATA" --repeat 16 --batch-size "$3" --steps 20 --warmup 5 --loader-steps 12 --workers 8 \
    --note "gpu_check.sh, random init" --out "$OUT/$1.json" 2>&1 | tail -12
}
bench lite0 timm:tf_efficientnet_lite0 256
bench resnet50 timm:resnet50 256
# the recipe's GPU batch (vistune.recipe.GPU_BATCH, marked not measured until this runs): the fastest tried batch
timeout 120 $PY benchmarks/train_throughput.py --device cuda --model timm:tf_efficientnet_lite0 --pretrained none \
  --image-size 224 --data "$DATA" --repeat 16 --batch-size 0 --try-batches 32 64 128 256 --try-steps 4 --steps 10 \
  --warmup 3 --loader-steps 4 --workers 8 --note "gpu_check.sh: GPU_BATCH choice" \
  --out "$OUT/lite0_batch_choice.json" 2>&1 | tail -6

$PY - "$OUT" "$tests_rc" "$tests_s" <<'PY'
import json, sys
from pathlib import Path
out, rc, secs = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
print(f"\ngpu tests: exit {rc} in {secs} s (log {out / 'gpu_tests.log'})")
cols = ["ceiling_img_s", "vistune_img_s", "same_recipe_loader_img_s", "tutorial_img_s", "vistune_over_ceiling",
        "vistune_over_tutorial"]
print(f"{'model':10s} {'batch':>5s} {'prec':>8s} " + " ".join(f"{c.replace('_img_s', ''):>18s}" for c in cols)
      + f" {'peak GiB (vistune)':>18s}")
for name in ("lite0", "resnet50"):
    f = out / f"{name}.json"
    if not f.exists():
        print(f"{name:10s} (no result: see the output above)")
        continue
    r = json.loads(f.read_text())
    print(f"{name:10s} {r['batch_size']:5d} {r['precision']:>8s} " + " ".join(f"{r[c]:18.2f}" for c in cols)
          + f" {r['peak_gpu_mem_gib'].get('vistune') or 0:18.2f}")
PY
