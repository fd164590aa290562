#!/usr/bin/env bash
# Take a machine from a fresh clone to a working mmadapter environment.
#
#   bash tools/setup_env.sh            # install everything (idempotent; seconds when done before)
#
# What it does, in order, skipping each step that is already satisfied:
#   1. torch 2.14.1 + torchvision 0.29.1
#   2. build tools for mmcv: setuptools>=77,<82 (mmcv's setup.py imports pkg_resources), wheel, ninja
#   3. mmcv 2.1.0 with compiled ops. Only a source release exists and its setup.py forces
#      -std=c++17 while torch 2.14 headers need C++20, so the source is patched and built
#      once (about 20 minutes on 2 cores) and the wheel cached in $MMADAPTER_CACHE
#      (default ~/.cache/mmadapter). CUDA ops are built when a GPU is visible or FORCE_CUDA=1.
#      A working mmcv 2.x (< 2.2) that imports mmcv.ops is left alone.
#   4. mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2 (+ ftfy, regex it does not declare),
#      mmpretrain 1.2.0, timm, and this package in editable mode with its test extras.
set -euo pipefail

PY=${PYTHON:-python3}
CACHE=${MMADAPTER_CACHE:-$HOME/.cache/mmadapter}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIP=("$PY" -m pip install --disable-pip-version-check --no-input -q)
mkdir -p "$CACHE/wheels"

log() { printf '[setup_env] %s\n' "$*"; }

have_version() {  # have_version MODULE VERSION_PREFIX
  "$PY" - "$1" "$2" <<'PYEOF' 2>/dev/null
import importlib, sys
mod = importlib.import_module(sys.argv[1])
sys.exit(0 if mod.__version__.startswith(sys.argv[2]) else 1)
PYEOF
}

# 1. torch
if have_version torch 2.14.1 && have_version torchvision 0.29.1; then
  log "torch 2.14.1 / torchvision 0.29.1 present"
else
  log "installing torch 2.14.1 + torchvision 0.29.1"
  "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
fi

# 2. build tools (setuptools must keep pkg_resources: mmcv's setup.py and mmengine's
#    `mmdet::` base-config lookup both import it)
"${PIP[@]}" 'setuptools>=77,<82' wheel ninja

# 3. mmcv
mmcv_ok() {
  "$PY" - <<'PYEOF' 2>/dev/null
import mmcv, mmcv.ops  # noqa: F401
from packaging.version import Version
v = Version(mmcv.__version__)
raise SystemExit(0 if Version('2.0.0') <= v < Version('2.2.0') else 1)
PYEOF
}
if mmcv_ok; then
  log "mmcv $("$PY" -c 'import mmcv; print(mmcv.__version__)') with ops present; left alone"
else
  TORCH_TAG=$("$PY" -c 'import torch, sys; print("torch%s-py%d%d" % (torch.__version__.replace("+", "_"), *sys.version_info[:2]))')
  if [ "${FORCE_CUDA:-0}" = 1 ] || "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    export FORCE_CUDA=1
    OPS_TAG=cuda
  else
    unset FORCE_CUDA
    OPS_TAG=cpu
  fi
  WHEEL_DIR="$CACHE/wheels/mmcv-2.1.0-$TORCH_TAG-$OPS_TAG"
  if ! ls "$WHEEL_DIR"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    log "building mmcv 2.1.0 ($OPS_TAG ops) from source; this takes about 20 minutes on 2 cores, once"
    BUILD=$(mktemp -d)
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: mmcv==2.1.0 -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-2.1.0.tar.gz -C "$BUILD"
    sed -i 's/-std=c++17/-std=c++20/g' "$BUILD/mmcv-2.1.0/setup.py"
    grep -q -- '-std=c++20' "$BUILD/mmcv-2.1.0/setup.py" || { log "could not patch mmcv's C++ standard flag"; exit 1; }
    mkdir -p "$WHEEL_DIR.tmp"
    (cd "$BUILD/mmcv-2.1.0" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps . -w "$WHEEL_DIR.tmp")
    rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.tmp" "$WHEEL_DIR"
    rm -rf "$BUILD"
  fi
  log "installing cached mmcv wheel from $WHEEL_DIR"
  "${PIP[@]}" --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-2.1.0-*.whl
  "${PIP[@]}" addict packaging Pillow pyyaml yapf opencv-python
  mmcv_ok || { log "mmcv installed but 'import mmcv.ops' fails"; exit 1; }
fi

# 4. the OpenMMLab stack and this package
"${PIP[@]}" -r "$REPO/requirements.txt"
"${PIP[@]}" --no-deps -e "$REPO"
"$PY" -c 'import mmadapter, mmdet.models, mmseg.models, mmpretrain.models; print("[setup_env] environment ready: mmadapter", mmadapter.__version__)'
