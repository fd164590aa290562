#!/usr/bin/env bash
# A first run on any machine, CPU only (about 10 minutes on 2 cores):
#
#   bash tools/setup_env.sh && bash tools/run_demo.sh [--cfg-options ...]
#
# 1. generates a small synthetic PASCAL VOC dataset in ./data/toy
#    (tools/misc/make_toy_data.py),
# 2. evaluates the untrained model (the baseline),
# 3. trains RetinaNet + a tiny Swin with Mona adapters on it
#    (configs/toy/retinanet_swin_toy_voc.py),
# 4. evaluates the trained checkpoint with tools/test.py,
# 5. prints the parameter report and the VOC mAP before and after training.
#
# --cfg-options given to this script apply to every step, e.g.
# --cfg-options train_cfg.max_iters=100. Data and results go under the
# current directory (./data/toy, ./work_dirs/demo_toy_voc or $WORK_DIR);
# the toy config reads data/toy relative to it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$REPO/tools/_python.sh"
PY=$PYTHON
CONFIG="$REPO/configs/toy/retinanet_swin_toy_voc.py"
WORK_DIR=${WORK_DIR:-work_dirs/demo_toy_voc}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

step() { printf '\n===== %s =====\n' "$*"; }

step "1/5 toy VOC data (data/toy/VOCdevkit)"
"$PY" "$REPO/tools/misc/make_toy_data.py" --dataset voc --out-dir data/toy

step "2/5 untrained baseline"
mkdir -p "$WORK_DIR"
"$PY" "$REPO/tools/misc/untrained_checkpoint.py" "$CONFIG" \
  "$WORK_DIR/untrained.pth" "$@"
"$PY" "$REPO/tools/test.py" "$CONFIG" "$WORK_DIR/untrained.pth" \
  --work-dir "$WORK_DIR/eval_untrained" "$@"

step "3/5 training (Mona adapters, CPU)"
"$PY" "$REPO/tools/train.py" "$CONFIG" --work-dir "$WORK_DIR" "$@"

step "4/5 evaluating the trained checkpoint"
CHECKPOINT=$(cat "$WORK_DIR/last_checkpoint")
"$PY" "$REPO/tools/test.py" "$CONFIG" "$CHECKPOINT" \
  --work-dir "$WORK_DIR/eval_trained" "$@"

step "5/5 parameters"
"$PY" "$REPO/tools/analysis/count_params.py" "$CONFIG" "$@"

"$PY" - "$WORK_DIR" "$CHECKPOINT" <<'PYEOF'
import glob, json, os.path as osp, sys
work_dir, checkpoint = sys.argv[1:]

def voc_map(name):
    path = sorted(glob.glob(osp.join(work_dir, name, '*', '*.json')))[-1]
    with open(path) as f:
        return json.load(f)['pascal_voc/mAP']

before, after = voc_map('eval_untrained'), voc_map('eval_trained')
print(f'\nDEMO RESULT  VOC2007-test mAP@0.5: untrained {before:.3f} -> '
      f'trained {after:.3f}  ({checkpoint})')
PYEOF
