"""Config edits shared by tools/train.py and tools/test.py, and building the
Runner (with the CPU launch fixes applied)."""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmadapter.datasets.paths import retarget_data_root
from mmadapter.engine.amp import fit_amp_to_device
from mmadapter.engine.checkpoint_hook import (
    enable_adapter_checkpoint_loading,
    use_atomic_checkpoints,
)
from mmadapter.engine.dist import setup_cpu_distributed
from mmadapter.engine.model_record_hook import record_model_config
from mmadapter.safe_load import load_file
from .config_checks import warn_unknown_options
from .input_checks import latest_checkpoint


def load_config(path: str, cfg_options: Optional[dict] = None,
                launcher: str = 'none') -> Config:
    """The config at ``path`` with ``--cfg-options`` merged in.

    ``data_root=PATH`` moves every dataset that uses the config's top-level
    ``data_root`` (and evaluator annotation files under it) to PATH; a plain
    merge would only change the variable, which the dataloaders have
    already copied.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'Config file {path!r} does not exist.')
    cfg = Config.fromfile(path)
    old_root = cfg.get('data_root')
    cfg.launcher = launcher
    if cfg_options:
        warn_unknown_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
        if 'data_root' in cfg_options:
            if not old_root:
                raise ValueError(
                    f'--cfg-options data_root=...: {path} has no top-level '
                    'data_root; set the dataset roots themselves, e.g. '
                    'train_dataloader.dataset.data_root=PATH.')
            retarget_data_root(cfg, old_root, cfg_options['data_root'])
    return cfg


def default_work_dir(config_path: str) -> str:
    """``./work_dirs/<method folder>/<config name>``: the table configs of
    one setting share a file name across the method folders
    (configs/mona/cascade_swin_b_coco.py, configs/lora/...), so the folder
    keeps their runs apart. Under a ``configs`` folder, the path below it
    (configs/toy/x.py -> work_dirs/toy/x); elsewhere the config's own
    folder name."""
    parts = osp.normpath(osp.abspath(config_path)).split(osp.sep)
    stem = osp.splitext(parts[-1])[0]
    if 'configs' in parts[:-1]:
        below = len(parts) - 1 - parts[:-1][::-1].index('configs')
        return osp.join('./work_dirs', *parts[below:-1], stem)
    return osp.join('./work_dirs', parts[-2] if len(parts) > 1 else '',
                    stem)


def set_work_dir(cfg: Config, work_dir: Optional[str],
                 config_path: str) -> None:
    """``--work-dir``, else the config's ``work_dir``, else
    :func:`default_work_dir`."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config_path)


def enable_auto_scale_lr(cfg: Config) -> None:
    auto_scale_lr = cfg.get('auto_scale_lr') or {}
    if 'enable' not in auto_scale_lr or 'base_batch_size' not in \
            auto_scale_lr:
        raise ValueError(
            '--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
            'base_batch_size=N) in the config (N: the total batch size the '
            'learning rate was tuned for).')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``--resume`` alone resumes from the latest checkpoint of the work
    directory; ``--resume CKPT`` from that file."""
    if resume is None:
        return
    cfg.resume = True
    if resume == 'auto':
        cfg.load_from = None
    else:
        if '://' not in resume and not osp.isfile(resume):
            raise FileNotFoundError(
                f'--resume {resume!r}: checkpoint file not found.')
        cfg.load_from = resume


def keep_resumed_seed(cfg: Config, trusted=()) -> None:
    """A resumed run of a config without a fixed seed takes the seed of the
    run it resumes (recorded in the checkpoint's meta).

    mmengine draws a seed when the config has none, and builds the
    training dataloader, whose sampler draws its shuffling seed from it,
    before it resumes: the resumed run would go on with another data order
    than the interrupted one (its re-seeding from the checkpoint comes too
    late for the sampler)."""
    if not cfg.get('resume') or (cfg.get('randomness') or {}).get(
            'seed') is not None:
        return
    path = cfg.get('load_from') or latest_checkpoint(cfg.work_dir)
    if not path or '://' in path or not osp.isfile(path):
        return
    meta = load_file(path, trusted=trusted, mmap=True).get('meta') or {}
    if meta.get('seed') is not None:
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=meta['seed'])
        print_log(f'Resuming {path}: seed {meta["seed"]}, as the run that '
                  'wrote it (the config fixes none).', logger='current')


def build_runner(cfg: Config) -> Runner:
    """The config's Runner (``runner_type`` or mmengine's), after fitting
    mixed precision and multi-process launching to the machine (CPU
    fallbacks; the stock path on GPUs), and able to load adapter-only
    checkpoints (base weights first, even in test mode) and to write them
    atomically, each recording the model configuration it was written
    for."""
    use_atomic_checkpoints(cfg)
    enable_adapter_checkpoint_loading(cfg)
    record_model_config(cfg)
    fit_amp_to_device(cfg)
    setup_cpu_distributed(cfg, cfg.get('launcher', 'none'))
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
