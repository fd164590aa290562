"""Test (and evaluate) a detector, segmentor or classifier checkpoint.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show] [--show-dir DIR] [--wait-time S] [--tta]
        [--cfg-options KEY=VALUE ...] [--launcher ...]

Options as in mmdet 3.x's tools/test.py; see mmadapter/cli/commands.py.
"""
import os.path as osp
import sys

# run from a clone: use this checkout's package
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmadapter  # noqa: E402,F401  (registries)
from mmadapter.cli.commands import test  # noqa: E402

if __name__ == '__main__':
    test()
