"""Run several tasks on the same images with ONE shared frozen backbone.

    python tools/multitask_infer.py BASE IMAGE [IMAGE ...] \
        --task voc=work_dirs/voc/iter_600.pth \
        --task coco=work_dirs/coco/iter_300.pth \
        --task ade=work_dirs/ade/iter_300.pth [--out-dir DIR] [--device cpu]

BASE is the base checkpoint all tasks were trained on; each task checkpoint
is an adapter-only file (AdapterCheckpointHook) or a shared adapter set
(NAME.safetensors with NAME.json beside it; either file names it). Results are drawn by the
stock visualisers to DIR/<task>/<image>. See mmadapter/engine/multitask.py.
"""
import os.path as osp
import sys

# run from a clone: use this checkout's package
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmadapter  # noqa: E402,F401  (registries)
from mmadapter.engine.multitask import main  # noqa: E402

if __name__ == '__main__':
    main()
