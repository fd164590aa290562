"""Train a detector (mmdet config), a segmentor (mmseg config) or a classifier
(mmpretrain config).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CKPT]] [--cfg-options KEY=VALUE ...] [--launcher ...]

Options as in mmdet 3.x's tools/train.py; see mmadapter/cli/commands.py.
"""
import os.path as osp
import sys

# run from a clone: use this checkout's package
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmadapter  # noqa: E402,F401  (registries)
from mmadapter.cli.commands import train  # noqa: E402

if __name__ == '__main__':
    train()
