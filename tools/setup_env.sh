#!/usr/bin/env bash
# Take a machine from a fresh clone to a working mmadapter environment.
#
#   bash tools/setup_env.sh            # idempotent; seconds when done before
#   bash tools/setup_env.sh --tests    # also the test tools (requirements/tests.txt)
#
# It installs into the interpreter $PYTHON (default: the `python3` on PATH, so
# an activated virtual environment is used as it is) and records that
# interpreter in .mmadapter-python, where tools/*.sh find it. Stages, in an
# order where none needs a package a later one installs, each skipped when
# what it installs is already there, each timed:
#   1. torch 2.14.1 + torchvision 0.29.1 where there is no torch; a torch of
#      the supported range is left alone, one outside it stops the set-up
#   2. build tools: setuptools>=77,<82 (mmcv's setup.py and mmengine's
#      `mmdet::` base lookup import pkg_resources), wheel, ninja, packaging
#   3. mmengine 0.10.7: mmcv's build and `import mmcv.ops` need it
#   4. mmcv 2.1.0 with compiled ops. Only a source release exists and its
#      setup.py forces -std=c++17 while torch 2.14's headers need C++20, so the
#      source is patched and built once (about 17 minutes on 2 cores, progress
#      printed) and the wheel cached in $MMADAPTER_CACHE (default
#      ~/.cache/mmadapter) under a key of python, torch, and the ops: cpu, or
#      the CUDA version and GPU architectures. CUDA ops are built when torch
#      can use a GPU, or with FORCE_CUDA=1 on a build node without one
#      (TORCH_CUDA_ARCH_LIST overrides the architectures: by default the
#      visible GPUs', else all that torch was built for). A working mmcv
#      2.0/2.1 is left alone, unless CUDA ops are wanted and it has none.
#   5. mmdet 3.3, mmsegmentation 1.2 (+ ftfy, regex it does not declare),
#      mmpretrain 1.2 (requirements/runtime.txt), with --tests the test tools
#      (requirements/tests.txt), and this package in editable mode.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
CACHE=${MMADAPTER_CACHE:-$HOME/.cache/mmadapter}
PIP=("$PY" -m pip install --disable-pip-version-check --no-input -q)
mkdir -p "$CACHE/wheels"

log() { printf '[setup_env] %s\n' "$*"; }
duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
SETUP_T0=$SECONDS
stage() { STAGE=$1; STAGE_T0=$SECONDS; log "stage $STAGE"; }
stage_done() { log "stage $STAGE: $1 in $(duration $((SECONDS - STAGE_T0)))"; }

# requirements_met REQUIREMENT... : are these distributions installed at
# versions that satisfy the specifiers? Reads package metadata only (imports
# none of them), so it needs nothing but the interpreter and its pip.
requirements_met() {
  "$PY" - "$@" <<'PYEOF'
import re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:          # a fresh environment: pip's own copy
    from pip._vendor.packaging.requirements import Requirement
for line in sys.argv[1:]:
    req = Requirement(line)
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if not req.specifier.contains(re.sub(r'\+.*', '', version), prereleases=True):
        sys.exit(1)
PYEOF
}

# ensure NAME REQUIREMENT... : pip-install the requirements unless all are met.
ensure() {
  local name=$1; shift
  stage "$name"
  if requirements_met "$@"; then
    stage_done "already installed"
  else
    "${PIP[@]}" "$@"
    requirements_met "$@" || { log "pip did not install: $*"; exit 1; }
    stage_done "installed"
  fi
}

WITH_TESTS=0
for arg in "$@"; do
  case $arg in
    --tests) WITH_TESTS=1 ;;
    *) echo "usage: bash tools/setup_env.sh [--tests]" >&2; exit 2 ;;
  esac
done

# requirement_lines FILE : its requirements, following -r includes (the
# reading setup.py's install_requires uses)
requirement_lines() {
  "$PY" -c 'import runpy, sys
print("\n".join(runpy.run_path(sys.argv[1])["read_requirements"](sys.argv[2])))' \
    "$REPO/setup.py" "$1"
}

log "interpreter $PY"
# 1. torch: a working torch of the supported range is left alone (an mmcv
# compiled against it would break if it were replaced); none is installed
# as the pinned pair; one outside the range stops the set-up.
TORCH_RANGE='>=2.5,<2.15'
stage "1/5 torch"
if "$PY" -c 'import torch' 2>/dev/null; then
  if ! requirements_met "torch$TORCH_RANGE"; then
    log "torch $("$PY" -c 'import torch; print(torch.__version__)') is installed, but mmadapter supports torch$TORCH_RANGE: install a torch in that range (e.g. 'pip install torch==2.14.1 torchvision==0.29.1') or use a new virtual environment."
    exit 1
  fi
  if ! "$PY" -c 'import torchvision' 2>/dev/null; then
    log "torch $("$PY" -c 'import torch; print(torch.__version__)') has no torchvision beside it: install the torchvision of that torch release (torch 2.N pairs with torchvision 0.(N+15))."
    exit 1
  fi
  stage_done "torch $("$PY" -c 'import torch; print(torch.__version__)') present, left alone"
else
  "${PIP[@]}" 'torch==2.14.1' 'torchvision==0.29.1'
  stage_done "installed"
fi
ensure "2/5 build tools" 'setuptools>=77,<82' wheel ninja packaging
ensure "3/5 mmengine" 'mmengine>=0.10.0,<1.0.0'

# 4. mmcv. CUDA ops are wanted where torch can use a GPU, or with
# FORCE_CUDA=1 (a build node without one); GPUs that torch cannot use stop
# the set-up with the reason (mmadapter/cli/cuda_env.py, run by path: the
# package cannot be imported before mmcv exists).
CUDA_ENV=("$PY" "$REPO/mmadapter/cli/cuda_env.py")
rc=0; "${CUDA_ENV[@]}" wants-cuda || rc=$?
case $rc in
  0) WANT_CUDA=1 ;;
  1) WANT_CUDA=0 ;;
  *) log "stopped: the GPUs of this machine cannot be used (above)"; exit 1 ;;
esac

# mmcv_ok : an mmcv 2.0/2.1 that imports mmcv.ops, with CUDA ops where they
# are wanted (a CPU-only mmcv is never kept on a CUDA machine) and, where a
# GPU is visible, kernels that run on it.
mmcv_ok() {
  WANT_CUDA=$WANT_CUDA "$PY" - "$REPO/mmadapter/cli" <<'PYEOF' 2>/dev/null
import os, sys
import mmcv, mmcv.ops  # noqa: F401
from packaging.version import Version
v = Version(mmcv.__version__)
if not Version('2.0.0') <= v < Version('2.2.0'):
    raise SystemExit(1)
if os.environ['WANT_CUDA'] == '1':
    sys.path.insert(0, sys.argv[1])
    import torch
    from cuda_env import mmcv_cuda_ops_problem
    if mmcv.ops.get_compiling_cuda_version() == 'not available':
        raise SystemExit(1)
    if torch.cuda.is_available() and mmcv_cuda_ops_problem():
        raise SystemExit(1)
PYEOF
}

# build_mmcv WHEEL_DIR : patch and build mmcv 2.1.0, printing ninja's progress
# ("[12/77]") as objects compiled out of the total with the elapsed time.
# Debug info is stripped at link time (-g objects made a wheel of hundreds
# of MB with CUDA ops).
build_mmcv() {
  local wheel_dir=$1 build t0=$SECONDS line
  build=$(mktemp -d)
  "$PY" -m pip download --disable-pip-version-check -q --no-deps \
    --no-binary :all: --no-build-isolation mmcv==2.1.0 -d "$build"
  tar -xzf "$build"/mmcv-2.1.0.tar.gz -C "$build"
  sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-2.1.0/setup.py"
  grep -q -- '-std=c++20' "$build/mmcv-2.1.0/setup.py" \
    || { log "could not patch mmcv's C++ standard flag"; exit 1; }
  rm -rf "$wheel_dir.tmp" && mkdir -p "$wheel_dir.tmp"
  log "mmcv: full build log in $build/build.log"
  if ! (cd "$build/mmcv-2.1.0" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        LDFLAGS="${LDFLAGS:-} -Wl,--strip-debug" \
        "$PY" -m pip wheel --disable-pip-version-check -v --no-build-isolation \
        --no-deps . -w "$wheel_dir.tmp" 2>&1) | tee "$build/build.log" |
      while IFS= read -r line; do
        if [[ $line =~ ^[[:space:]]*\[([0-9]+)/([0-9]+)\][[:space:]] ]]; then
          log "mmcv: compiled ${BASH_REMATCH[1]}/${BASH_REMATCH[2]} objects, $(duration $((SECONDS - t0))) elapsed"
        fi
      done; then
    tail -n 40 "$build/build.log" >&2
    log "mmcv build failed; the full log is $build/build.log"
    exit 1
  fi
  rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"
  rm -rf "$build"
}

stage "4/5 mmcv"
if mmcv_ok; then
  stage_done "mmcv $("$PY" -c 'import mmcv; print(mmcv.__version__)') with ops present ($([ $WANT_CUDA = 1 ] && echo CUDA || echo CPU) ops wanted), left alone"
else
  TORCH_TAG=$("$PY" -c 'import torch, sys; print("torch%s-py%d%d" % (torch.__version__.replace("+", "_"), *sys.version_info[:2]))')
  if [ $WANT_CUDA = 1 ]; then
    # CUDA_HOME, TORCH_CUDA_ARCH_LIST (default: the visible GPUs', else
    # every architecture torch was built for), CPATH (cuBLAS/cuSPARSE
    # headers from torch's nvidia-* wheels) and the cache key; or an error
    # naming what to install (nvcc's major version must be torch's CUDA's).
    BUILD_ENV=$("${CUDA_ENV[@]}" build-env) || exit 1
    while IFS='=' read -r name value; do
      case $name in
        CUDA_HOME|TORCH_CUDA_ARCH_LIST|CPATH) export "$name=$value" ;;
        MMCV_OPS_KEY) OPS_TAG=$value ;;
        NVCC_VERSION) NVCC_VERSION=$value ;;
      esac
    done <<< "$BUILD_ENV"
    export FORCE_CUDA=1
    log "mmcv: CUDA ops with nvcc $NVCC_VERSION ($CUDA_HOME) for TORCH_CUDA_ARCH_LIST='$TORCH_CUDA_ARCH_LIST'"
  else
    unset FORCE_CUDA
    OPS_TAG=cpu
  fi
  WHEEL_DIR="$CACHE/wheels/mmcv-2.1.0-$TORCH_TAG-$OPS_TAG"
  if ls "$WHEEL_DIR"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    log "mmcv: cached wheel $WHEEL_DIR"
  else
    log "mmcv: building 2.1.0 ($OPS_TAG ops) from source, once (CPU ops: about 10-17 minutes on 2 cores; CUDA ops: see the README's set-up table)"
    build_mmcv "$WHEEL_DIR"
  fi
  "${PIP[@]}" --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-2.1.0-*.whl
  "${PIP[@]}" "$WHEEL_DIR"/mmcv-2.1.0-*.whl     # its dependencies
  if ! mmcv_ok; then
    if [ $WANT_CUDA = 1 ]; then
      "$PY" -c "import sys; sys.path.insert(0, '$REPO/mmadapter/cli'); import torch; from cuda_env import mmcv_cuda_ops_problem as p; print(p() if torch.cuda.is_available() else '')" >&2 || true
    fi
    log "mmcv installed but 'import mmcv.ops' (with the ops wanted) fails"; exit 1
  fi
  stage_done "installed"
fi

# 5. the rest of the stack (requirements/runtime.txt), the test tools where
# asked for (--tests: requirements/tests.txt), and this package (editable,
# pointing at $REPO)
FILES=("$REPO/requirements/runtime.txt")
[ $WITH_TESTS = 1 ] && FILES+=("$REPO/requirements/tests.txt")
REQUIREMENTS=()
for file in "${FILES[@]}"; do
  mapfile -t -O "${#REQUIREMENTS[@]}" REQUIREMENTS < <(requirement_lines "$file")
done
ensure "5/5 mmdet, mmseg, mmpretrain$([ $WITH_TESTS = 1 ] && echo ', test tools')" "${REQUIREMENTS[@]}"
if [ "$(cd / && "$PY" -c 'import os, mmadapter; print(os.path.dirname(os.path.dirname(os.path.abspath(mmadapter.__file__))))' 2>/dev/null)" != "$REPO" ]; then
  "${PIP[@]}" --no-deps -e "$REPO"
  log "mmadapter installed in editable mode from $REPO"
fi

(cd / && "$PY" -c 'import mmadapter, mmdet.models, mmseg.models, mmpretrain.models; print("[setup_env] environment ready: mmadapter", mmadapter.__version__)')
echo "$PY" > "$REPO/.mmadapter-python"
log "total $(duration $((SECONDS - SETUP_T0))); tools/*.sh will use $PY"
