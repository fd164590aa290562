"""The dataset paths of a config: moving them to another root, and failing
early, and clearly, when they are missing.

Without the check a wrong ``data_root`` surfaces deep inside dataset
construction (or, for the validation set, after a whole training epoch) as
a bare ``FileNotFoundError``.
"""
import os
import os.path as osp
from typing import List, Sequence

from mmengine.config import Config

from .config_entries import (
    EVALUATORS,
    LOADERS,
    config_datasets,
    evaluator_metrics,
)
from .layouts import implicit_files

DATA_DOCS = ('README.md, section "Data preparation" (or generate a small '
             'synthetic dataset with `python tools/misc/make_toy_data.py`)')


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or directory named by the config does not exist."""


def _is_remote(path: str, dataset_cfg: dict) -> bool:
    backend = (dataset_cfg.get('backend_args') or {}).get('backend', 'local')
    return '://' in path or backend != 'local'


def _under_root(root: str, path: str) -> str:
    return path if not root or osp.isabs(path) else osp.join(root, path)


def retarget_data_root(cfg: Config, old_root: str, new_root: str) -> None:
    """Move every dataset whose ``data_root`` is ``old_root`` (the config's
    top-level ``data_root`` variable, already substituted into the
    dataloaders) to ``new_root``, and evaluator annotation files under
    ``old_root`` with them."""
    old = osp.normpath(old_root)
    for _, dataset in config_datasets(cfg, LOADERS):
        if osp.normpath(dataset.get('data_root') or '.') == old:
            dataset['data_root'] = new_root
    for evaluator in EVALUATORS:
        for metric in evaluator_metrics(cfg.get(evaluator)):
            ann_file = metric.get('ann_file') if metric else None
            if ann_file and osp.normpath(ann_file).startswith(old + os.sep):
                metric['ann_file'] = osp.join(
                    new_root, osp.relpath(osp.normpath(ann_file), old))


def missing_dataset_paths(dataset_cfg: dict, key: str) -> List[str]:
    """Lines describing the files of one dataset config that do not exist,
    resolved as mmengine's BaseDataset resolves them."""
    root = dataset_cfg.get('data_root') or ''
    if root and _is_remote(root, dataset_cfg):
        return []
    if root and not osp.isdir(root):
        return [f'{key}.data_root = {root!r} (directory not found)']
    missing = []
    ann_file = dataset_cfg.get('ann_file') or ''
    if ann_file and not _is_remote(ann_file, dataset_cfg):
        path = _under_root(root, ann_file)
        if not osp.exists(path):
            missing.append(f'{key}.ann_file -> {path!r} (not found)')
    for name, prefix in (dataset_cfg.get('data_prefix') or {}).items():
        if not prefix or _is_remote(prefix, dataset_cfg):
            continue
        path = _under_root(root, prefix)
        if not osp.isdir(path):
            missing.append(
                f'{key}.data_prefix.{name} -> {path!r} (directory not found)')
    for relative in implicit_files(dataset_cfg):
        path = _under_root(root, relative.rstrip('/'))
        found = osp.isdir(path) if relative.endswith('/') else \
            osp.isfile(path)
        if not found:
            what = 'directory' if relative.endswith('/') else 'file'
            missing.append(
                f'{key}.data_root = {root!r}: {dataset_cfg["type"]} reads '
                f'{path!r} ({what} not found)')
    return missing


def missing_evaluator_paths(evaluator_cfg, key: str) -> List[str]:
    """Annotation files of metrics (CocoMetric's ``ann_file`` does not
    follow a changed dataset ``data_root``)."""
    metrics = evaluator_metrics(evaluator_cfg)
    missing = []
    for i, metric in enumerate(metrics):
        ann_file = metric.get('ann_file') if metric else None
        if ann_file and '://' not in ann_file and not osp.exists(ann_file):
            where = key if len(metrics) == 1 else f'{key}.{i}'
            missing.append(f'{where}.ann_file = {ann_file!r} (not found)')
    return missing


def check_dataset_paths(cfg: Config, loaders: Sequence[str],
                        evaluators: Sequence[str] = ()) -> None:
    """Raise :class:`DatasetNotFoundError` listing every missing dataset
    file of the named dataloaders and evaluators (absent or ``None``
    entries of ``cfg`` are skipped)."""
    missing = []
    for key, dataset in config_datasets(cfg, loaders):
        missing += missing_dataset_paths(dataset, key)
    for evaluator in evaluators:
        missing += missing_evaluator_paths(cfg.get(evaluator), evaluator)
    if missing:
        lines = '\n  '.join(missing)
        raise DatasetNotFoundError(
            f'Dataset files named by the config do not exist:\n  {lines}\n'
            f'Prepare the dataset as described in {DATA_DOCS}, or point the '
            'config at your copy, e.g. with --cfg-options '
            f"{missing[0].split(' ')[0]}=PATH.")
