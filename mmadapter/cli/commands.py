"""Command lines of tools/train.py and tools/test.py.

The options are those of mmdet 3.x's tools; the same scripts run detection
(mmdet), segmentation (mmseg) and classification (mmpretrain) configs.
"""
import argparse
import os
import os.path as osp
from contextlib import contextmanager
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction

from mmadapter.apis.toolboxes import enable_tta, toolbox_of
from mmadapter.datasets.checks import (
    SKIP_ENV,
    DataError,
    check_annotation_files,
    dataset_checks,
)
from mmadapter.datasets.layouts import layout_mismatches
from mmadapter.datasets.paths import DatasetNotFoundError, check_dataset_paths
from mmadapter.engine.amp import enable_amp
from mmadapter.engine.atomic_checkpoint import CheckpointWriteError
from mmadapter.engine.dist import end_distributed_run
from mmadapter.engine.rank_watchdog import LostRankError, watch_ranks
from mmadapter.safe_load import (
    TRUST_KEY,
    UnsafeCheckpointError,
    add_trust_option,
    checkpoint_safety,
)
from .check_data import check_data
from .cuda_env import CudaEnvError, check_gpu_run
from .input_checks import check_run_checkpoints, check_test_checkpoint
from .preflight import check_backbone_config
from .runner_setup import (
    build_runner,
    enable_auto_scale_lr,
    keep_resumed_seed,
    load_config,
    set_resume,
    set_work_dir,
)

# Mistakes in the command or the config found before the Runner is built
# (DatasetNotFoundError is a FileNotFoundError, UnsupportedToolboxError a
# ValueError), and GPUs that the run cannot use (CudaEnvError).

USER_ERRORS = (FileNotFoundError, ValueError, CudaEnvError,
               UnsafeCheckpointError)
# Problems met while the Runner builds or trains, whose message says all
# (the dataset's, a checkpoint write's or a refused checkpoint's): no
# traceback either.
RUN_ERRORS = (DataError, CheckpointWriteError, LostRankError,
              UnsafeCheckpointError)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs merged into the '
        'config; data_root=PATH moves every dataset of the config (and '
        'evaluator annotation files under its root) to PATH; key="[a,b]" '
        'for lists (quotation marks needed, no spaces)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    add_trust_option(parser)
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank (older)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Train a detector (mmdet config), a segmentor (mmseg '
        'config) or a classifier (mmpretrain config) with mmadapter')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true',
        help='enable automatic mixed precision training (bfloat16 on CPU)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by the actual total batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or without a value from the latest '
        'checkpoint in the work directory')
    parser.add_argument(
        '--check-data', action='store_true',
        help='do not train: read every image and annotation of the '
        'training and validation sets once and report problems with file '
        'names (written to WORK_DIR/check_data.txt too)')
    parser.add_argument(
        '--skip-bad-images', action='store_true',
        help='skip (and log) images that cannot be read during training '
        'instead of stopping')
    add_common_args(parser)
    return parser


def test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector, a segmentor or a '
        'classifier')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument(
        '--out', help='dump predictions: a .pkl file for detection and '
        'classification, a directory of prediction maps for segmentation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory where painted images will be saved '
        '(under work_dir/timestamp/ for detection)')
    parser.add_argument(
        '--wait-time', type=float, default=2,
        help='the interval of show (s)')
    parser.add_argument(
        '--tta', action='store_true',
        help="test-time augmentation: the config's tta_model / "
        'tta_pipeline, horizontal flips by default')
    add_common_args(parser)
    return parser


def parse_args(parser: argparse.ArgumentParser,
               argv: Optional[List[str]] = None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _limit_dynamo_recompiles() -> None:
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    setup_cache_size_limit_of_dynamo()


@contextmanager
def exit_on_user_error(errors=USER_ERRORS):
    """End the process with the message of a mistake in the command or the
    config, instead of a traceback."""
    try:
        yield
    except errors as error:
        raise SystemExit(f'{type(error).__name__}: {error}') from None


def trusted_types(cfg: Config, args: argparse.Namespace) -> List[str]:
    """The type names the config (``trust_checkpoint_types``) and the
    command line add to the checkpoint allow-list."""
    return list(cfg.get(TRUST_KEY) or []) + list(
        args.trust_checkpoint_types or [])


@contextmanager
def guarded_run(cfg: Config, args: argparse.Namespace):
    """What every run of tools/train.py and tools/test.py runs in:
    weights-only checkpoint loads with the allow-list (mmengine's own loads
    of --resume, load_from and init_cfg files included) and the dataset
    checks."""
    with checkpoint_safety(trusted_types(cfg, args)), dataset_checks():
        yield


def check_data_paths(cfg: Config, loaders, evaluators) -> None:
    """:func:`check_dataset_paths`, saying so when a ``data_root`` holds
    another dataset."""
    try:
        check_dataset_paths(cfg, loaders=loaders, evaluators=evaluators)
    except DatasetNotFoundError as error:
        mismatch = layout_mismatches(cfg, loaders)
        if not mismatch:
            raise
        raise DatasetNotFoundError(f'{mismatch}\n{error}') from None


def training_loaders(cfg: Config) -> List[str]:
    """The dataloaders a training run reads: mmengine validates whenever
    ``val_cfg`` is set, also to mmpretrain's ``dict()``."""
    validates = cfg.get('val_cfg') is not None
    return ['train_dataloader'] + ['val_dataloader'] * validates


def prepare_train_config(args: argparse.Namespace) -> Config:
    _limit_dynamo_recompiles()
    cfg = load_config(args.config, args.cfg_options, args.launcher)
    # the machine first: GPUs it cannot use are named before anything else
    check_gpu_run(cuda_wanted=torch.cuda.is_available())
    set_work_dir(cfg, args.work_dir, args.config)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    set_resume(cfg, args.resume)
    loaders = training_loaders(cfg)
    check_data_paths(cfg, loaders=loaders,
                     evaluators=['val_evaluator'] * ('val_dataloader' in
                                                     loaders))
    check_annotation_files(cfg, loaders)
    with checkpoint_safety(cfg.get(TRUST_KEY) or ()):
        check_run_checkpoints(cfg)
    keep_resumed_seed(cfg, cfg.get(TRUST_KEY) or ())
    return cfg


def prepare_test_config(args: argparse.Namespace) -> Config:
    _limit_dynamo_recompiles()
    cfg = load_config(args.config, args.cfg_options, args.launcher)
    # the machine first: GPUs it cannot use are named before anything else
    check_gpu_run(cuda_wanted=torch.cuda.is_available())
    set_work_dir(cfg, args.work_dir, args.config)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(
            f'Checkpoint {args.checkpoint!r} does not exist.')
    with checkpoint_safety(cfg.get(TRUST_KEY) or ()):
        check_test_checkpoint(cfg, args.checkpoint)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        toolbox_of(cfg).enable_visualization(cfg, args.show, args.show_dir,
                                             args.wait_time)
    if args.tta:
        enable_tta(cfg)
    if args.out is not None:
        toolbox_of(cfg).add_prediction_dump(cfg, args.out)
    check_data_paths(cfg, loaders=['test_dataloader'],
                     evaluators=['test_evaluator'])
    check_annotation_files(cfg, ['test_dataloader'])
    return cfg


def train(argv: Optional[List[str]] = None) -> None:
    """tools/train.py (with ``--check-data``: only the dataset scan)."""
    args = parse_args(train_parser(), argv)
    with exit_on_user_error(), checkpoint_safety(
            args.trust_checkpoint_types):
        cfg = prepare_train_config(args)
        check_backbone_config(cfg)
    if args.check_data:
        return run_data_check(cfg)
    if args.skip_bad_images:
        os.environ[SKIP_ENV] = '1'  # read by the data-loading processes
    with exit_on_user_error(RUN_ERRORS), guarded_run(cfg, args):
        runner = build_runner(cfg)
        with watch_ranks():
            runner.train()
    del runner  # its DDP wrapper holds the process group
    end_distributed_run()


def run_data_check(cfg: Config) -> None:
    loaders = training_loaders(cfg)
    out_file = osp.join(cfg.work_dir, 'check_data.txt')
    with exit_on_user_error(USER_ERRORS + RUN_ERRORS):
        reports = check_data(cfg, loaders, out_file)
    problems = sum(len(r.problems) for r in reports)
    if problems:
        raise SystemExit(f'--check-data: {problems} problems in '
                         f'{sum(r.samples for r in reports)} samples; all '
                         f'of them are listed in {out_file}.')
    print(f'--check-data: no problems in {sum(r.samples for r in reports)} '
          f'samples of {len(reports)} datasets.')


def test(argv: Optional[List[str]] = None) -> dict:
    """tools/test.py; returns the metrics."""
    args = parse_args(test_parser(), argv)
    with exit_on_user_error(), checkpoint_safety(
            args.trust_checkpoint_types):
        cfg = prepare_test_config(args)
        # the checkpoint under test holds the weights (an adapter-only one
        # names its base itself), so init_cfg's file need not exist
        check_backbone_config(cfg, check_pretrained=False)
    with exit_on_user_error(RUN_ERRORS), guarded_run(cfg, args):
        metrics = build_runner(cfg).test()
    end_distributed_run()
    return metrics
