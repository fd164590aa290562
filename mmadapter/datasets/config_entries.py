"""Where a config names its datasets: the dataloaders' datasets (looking
through dataset wrappers) and the evaluators' metrics."""
from typing import Iterator, Sequence, Tuple

from mmengine.config import Config

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')


def leaf_datasets(dataset_cfg, path: str) -> Iterator[Tuple[str, dict]]:
    """The datasets that read files, with their config key path, looking
    through wrappers (RepeatDataset, ConcatDataset, ClassBalancedDataset,
    MultiImageMixDataset, ...)."""
    if 'datasets' in dataset_cfg:
        for i, child in enumerate(dataset_cfg['datasets']):
            yield from leaf_datasets(child, f'{path}.datasets.{i}')
    elif 'dataset' in dataset_cfg:
        yield from leaf_datasets(dataset_cfg['dataset'], f'{path}.dataset')
    else:
        yield path, dataset_cfg


def config_datasets(cfg: Config,
                    loaders: Sequence[str]) -> Iterator[Tuple[str, dict]]:
    """:func:`leaf_datasets` of the named dataloaders of ``cfg`` (absent
    ones, or ones without a dataset, are skipped)."""
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if loader_cfg and loader_cfg.get('dataset'):
            yield from leaf_datasets(loader_cfg['dataset'],
                                     f'{loader}.dataset')


def evaluator_metrics(evaluator_cfg) -> list:
    """The metric configs of an evaluator setting: one metric or a list."""
    if not evaluator_cfg:
        return []
    return list(evaluator_cfg) if isinstance(evaluator_cfg, (list, tuple)) \
        else [evaluator_cfg]
