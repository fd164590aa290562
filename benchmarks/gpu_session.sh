#!/usr/bin/env bash
# The GPU measurements in one command, for a lent GPU machine (the `device`
# tool: PyTorch, no package registry):
#
#   OUT=/path/to/out bash benchmarks/gpu_session.sh
#
# 1. installs the OpenMMLab stack from the wheels carried in .whl/ (mmengine,
#    mmdet, mmsegmentation, mmpretrain wheels and the mmcv-2.1.0.tar.gz
#    sdist, e.g. `pip download --no-deps` of the versions in
#    requirements.txt; mmcv is built there with its CPU ops only: the
#    backbone benchmarks need none of its CUDA ops);
# 2. measures, for Full, the floor (frozen, gradient through every block),
#    Mona, LoRA, AdaptFormer and Houlsby, the training step time (medians,
#    the methods taking their steps in turn in one process) and peak CUDA
#    memory at the paper's settings (benchmarks/run_benchmarks.py SETTINGS):
#    COCO Swin-B 1333x800 batch 1 fp16 AMP, VOC Swin-L 1000x600 batch 1 fp16
#    AMP, ADE20K Swin-L 512x512 batch 2 fp32; each setting within
#    SETTING_TIMEOUT seconds (150: 7.5 minutes for the three at most);
# 3. then whether the adapters' dropout masks are nn.Dropout's on CUDA
#    seed for seed (benchmarks/mask_parity.py, seconds) and, if time is
#    left, the fp16 AMP stability check.
# Results: $OUT/RESULTS_cuda_<setting>.md, results_cuda_<setting>.json,
# $OUT/RESULTS.md and mask_parity_cuda.json (copy them into benchmarks/ to
# record them).
#
#   bash benchmarks/gpu_session.sh --quick --device cpu [--methods ...]
#
# runs step 2 with a tiny Swin on the CPU in the current environment (no
# install): tests/test_benchmarks.py keeps the script working that way
# (SETTINGS="coco ade20k" picks settings).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}  # the interpreter (tests pass theirs)
OUT=${OUT:-/tmp/out}
QUICK=
DEVICE=cuda
METHODS=(Full 'Fixed (grad through blocks)' Mona LoRA AdaptFormer Houlsby)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=--quick ;;
    --device) DEVICE=$2; shift ;;
    --methods) shift; METHODS=("$@"); break ;;
    *) echo "gpu_session.sh: unknown argument $1 (--quick, --device D," \
            "--methods M...)" >&2; exit 2 ;;
  esac
  shift
done
SETTING_TIMEOUT=${SETTING_TIMEOUT:-150}
if [ -n "$QUICK" ]; then REPEATS=${REPEATS:-1}; else REPEATS=${REPEATS:-10}; fi
mkdir -p "$OUT"

if [ -z "$QUICK" ]; then
  mkdir -p /tmp/site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  # mmpretrain 1.2 breaks on import beside transformers 5 (its multimodal
  # models); an older transformers version seen first makes it skip them.
  mkdir -p /tmp/site/transformers-0.0.1.dist-info
  printf 'Metadata-Version: 2.1\nName: transformers\nVersion: 0.0.1\n' \
    > /tmp/site/transformers-0.0.1.dist-info/METADATA
  ( set -e; mkdir -p /tmp/mmcv && tar xzf .whl/mmcv-2.1.0.tar.gz -C /tmp/mmcv
    cd /tmp/mmcv/mmcv-2.1.0 && sed -i 's/-std=c++17/-std=c++20/g' setup.py
    CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 MAX_JOBS=16 \
      "$PY" setup.py -q build_ext --inplace >/tmp/mmcv_build.log 2>&1 \
      || { tail -30 /tmp/mmcv_build.log; exit 1; } ) || exit 1
  export PYTHONPATH=/tmp/mmcv/mmcv-2.1.0:$PYTHONPATH
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    | tee "$OUT/gpu.txt"
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -c "import mmadapter, torch; print('stack ok', torch.__version__)" \
  || exit 1

status=0
for setting in ${SETTINGS:-coco voc ade20k}; do
  start=$SECONDS
  timeout "$SETTING_TIMEOUT" "$PY" benchmarks/run_benchmarks.py \
    --device "$DEVICE" --setting "$setting" --repeats "$REPEATS" \
    --out-dir "$OUT" $QUICK --methods "${METHODS[@]}" \
    > "$OUT/log_$setting.txt" 2>&1
  rc=$?
  echo "$setting: exit $rc after $((SECONDS - start)) s"
  [ $rc -eq 0 ] || { tail -20 "$OUT/log_$setting.txt"; status=1; }
done
cat "$OUT/RESULTS.md" 2>/dev/null

if [ -z "$QUICK" ]; then
  # seconds: are the adapters' dropout masks nn.Dropout's fused kernel's?
  timeout 60 "$PY" benchmarks/mask_parity.py --device "$DEVICE" \
    --out "$OUT/mask_parity_cuda.json" | tail -20
  timeout 300 "$PY" benchmarks/amp_check.py --arch swin-b --size 512 \
    --steps 60 --device "$DEVICE" 2>&1 | tee "$OUT/amp_check_cuda.json" \
    | tail -25
fi
exit $status
