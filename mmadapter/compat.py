"""Fixes for the OpenMMLab 2.x stack on current torch, applied on import.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7
calls ``torch.load`` without the argument, so ``--resume``, ``load_from`` and
``tools/test.py`` fail on every mmengine checkpoint (``UnpicklingError ...
HistoryBuffer``). mmengine's own loader for local paths is replaced by one
that asks for a full load, as mmengine did with earlier torch. Only use
checkpoints you trust, as with any pickle.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader

_PATCHED = False


def load_local_checkpoint(filename, map_location=None, logger=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def patch_checkpoint_loading() -> None:
    global _PATCHED
    if not _PATCHED:
        CheckpointLoader.register_scheme(prefixes='', force=True)(
            load_local_checkpoint)
        _PATCHED = True
