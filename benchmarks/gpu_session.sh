#!/usr/bin/env bash
# What we run on a lent GPU machine (the `device` tool): install the stack
# from carried wheels (mmcv built there with its CPU ops only; CUDA ops are
# not needed by the backbone benchmarks), then the CUDA benchmarks, the fp16
# AMP stability check and the unit tests. Output goes to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
# mmpretrain 1.2 breaks on import beside transformers 5 (its multimodal models);
# an older transformers version seen first on the path makes it skip them.
mkdir -p /tmp/site/transformers-0.0.1.dist-info
printf 'Metadata-Version: 2.1\nName: transformers\nVersion: 0.0.1\n' > /tmp/site/transformers-0.0.1.dist-info/METADATA
( set -e; mkdir -p /tmp/mmcv && tar xzf .whl/mmcv-2.1.0.tar.gz -C /tmp/mmcv
  cd /tmp/mmcv/mmcv-2.1.0 && sed -i 's/-std=c++17/-std=c++20/g' setup.py
  CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 MAX_JOBS=16 python3 setup.py -q build_ext --inplace >/tmp/mmcv_build.log 2>&1 \
    || { tail -30 /tmp/mmcv_build.log; exit 1; } )
export PYTHONPATH=/tmp/mmcv/mmcv-2.1.0:$PYTHONPATH
python3 -c "import mmcv.ops, mmdet.models, mmadapter, torch; print('stack ok', torch.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 benchmarks/run_benchmarks.py --device cuda --out-dir "$OUT" --repeats 10 2>&1 | tail -40
python3 benchmarks/run_benchmarks.py --device cuda --size 1024 --out-dir "$OUT" --repeats 5 --skip-inference 2>&1 | tail -20
python3 benchmarks/amp_check.py --arch swin-b --size 512 --steps 60 --device cuda 2>&1 | tee "$OUT/amp_check_cuda.json" | tail -25
