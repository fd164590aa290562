"""The checkpoint files a train or test run is given (``--resume``,
``load_from``, the backbone's ``init_cfg``, tools/test.py's CHECKPOINT),
checked before the Runner is built (:mod:`mmadapter.checkpoint.checks`)."""
import glob
import os.path as osp
from typing import List, Optional

from mmengine.config import Config

from mmadapter.checkpoint.checks import (
    CheckpointFileError,
    check_checkpoint_file,
    check_run_checkpoint,
)
from mmadapter.checkpoint.records import init_cfg_checkpoint


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``work_dir/last_checkpoint`` names, if any."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def checkpoints_in(work_dir: str) -> List[str]:
    """The checkpoint files of a work directory, newest first."""
    return sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime,
                  reverse=True)


def resume_fix(work_dir: str, bad: str) -> str:
    others = [p for p in checkpoints_in(work_dir)
              if osp.abspath(p) != osp.abspath(bad)]
    if others:
        return f'Resume from an earlier checkpoint: --resume {others[0]}.'
    return 'No other checkpoint is in the work directory: train anew.'


def backbone_init_checkpoint(cfg: Config) -> Optional[str]:
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    return init_cfg_checkpoint(backbone.get('init_cfg')) \
        if isinstance(backbone, dict) else None


def check_run_checkpoints(cfg: Config) -> None:
    """The files a training run of ``cfg`` would load."""
    work_dir = cfg.get('work_dir') or '.'
    if cfg.get('resume'):
        path, option = cfg.get('load_from'), '--resume'
        if path is None:
            path = latest_checkpoint(work_dir)
            option = (f'--resume (the latest checkpoint of {work_dir}, as '
                      'its last_checkpoint file names it)')
            if path is not None and '://' not in path and \
                    not osp.isfile(path):
                raise CheckpointFileError(
                    f'{option}: {path} does not exist. '
                    + resume_fix(work_dir, path))
        if path is not None:
            check_run_checkpoint(path, option, cfg,
                                 resume_fix(work_dir, path))
    elif cfg.get('load_from'):
        check_run_checkpoint(cfg.load_from, 'load_from', cfg)
    init = backbone_init_checkpoint(cfg)
    if init:
        check_checkpoint_file(
            init, 'model.backbone.init_cfg.checkpoint',
            'Download the pretrained weights again (README, "Pretrained '
            'weights").')


def check_test_checkpoint(cfg: Config, path: str) -> None:
    check_run_checkpoint(path, 'tools/test.py CHECKPOINT', cfg)
