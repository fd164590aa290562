#!/usr/bin/env bash
# Put into .whl/ what benchmarks/gpu_lease.sh installs on the lent GPU
# machine, which has no network: the OpenMMLab packages of requirements.txt
# and those of their dependencies that its image lacks, as wheels for its
# Python (3.12, x86_64), and mmcv 2.1.0's source release (built there).
#
#   bash benchmarks/gpu_lease_wheels.sh      # then carry .whl in the lease
#
# The machine's image already has torch, torchvision, numpy, scipy,
# matplotlib, opencv-python-headless, pyyaml, rich, regex, tqdm, six,
# einops, pillow and packaging (the device tool's package list).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PYVER=${LEASE_PYTHON_VERSION:-3.12}
rm -rf .whl && mkdir -p .whl
grep -qx '/.whl/' .gitignore || echo '/.whl/' >> .git/info/exclude
PACKAGES=(
  mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0
  # mmengine
  addict termcolor yapf platformdirs
  # mmdet
  pycocotools shapely terminaltables
  # mmsegmentation
  prettytable wcwidth ftfy
  # mmpretrain (its `modelindex` requirement is an empty alias: the module
  # comes from model-index; click is on the image)
  mat4py model-index ordered-set markdown importlib-metadata
)
for package in "${PACKAGES[@]}"; do
  "$PY" -m pip download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$package"
done
"$PY" -m pip download -q --disable-pip-version-check --no-deps \
  --no-binary :all: -d .whl mmcv==2.1.0
ls -la .whl
du -sh .whl
