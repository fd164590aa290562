"""Which dataset a folder holds, by its layout, so that a ``data_root``
pointing at another dataset (a COCO folder given to a VOC config) is named
as such instead of as a list of missing files."""
import glob
import os.path as osp
from typing import Optional, Sequence

from mmengine.config import Config

from .data_paths import config_datasets

# name: (what the layout looks like, globs of which one must match)
LAYOUTS = {
    'Pascal VOC': ('VOC2007/ or VOC2012/ with Annotations, ImageSets/Main, '
                   'JPEGImages', ('VOC20*/Annotations', 'VOCdevkit')),
    'COCO': ('annotations/instances_*.json, train2017/, val2017/',
             ('annotations/instances_*.json', 'annotations/*.json')),
    'ADE20K': ('images/ and annotations/, each with training/ and '
               'validation/', ('ADEChallengeData2016', 'images/training')),
    'Cityscapes': ('leftImg8bit/ and gtFine/', ('leftImg8bit', 'gtFine')),
    'ImageNet': ('train/ and val/ class folders, meta/*.txt',
                 ('meta/train.txt', 'train/n[0-9]*')),
}
# dataset class name (without scope) -> the layout it reads
DATASET_LAYOUTS = {
    'VOCDataset': 'Pascal VOC', 'CocoDataset': 'COCO',
    'ADE20KDataset': 'ADE20K', 'CityscapesDataset': 'Cityscapes',
    'ImageNet': 'ImageNet', 'ImageNet21k': 'ImageNet',
}


def detect_layout(root: str) -> Optional[str]:
    """The known dataset whose layout ``root`` has, if any."""
    if not osp.isdir(root):
        return None
    for name, (_, patterns) in LAYOUTS.items():
        if any(glob.glob(osp.join(root, p)) for p in patterns):
            return name
    return None


def layout_mismatches(cfg: Config, loaders: Sequence[str]) -> str:
    """Lines naming every dataset of the config whose ``data_root`` holds
    another known dataset's layout ('' when there is none)."""
    lines = []
    for key, dataset in config_datasets(cfg, loaders):
        expected = DATASET_LAYOUTS.get(
            str(dataset.get('type', '')).split('.')[-1])
        root = dataset.get('data_root') or ''
        found = detect_layout(root) if root else None
        if expected and found and found != expected:
            lines.append(
                f'{key}.data_root = {root!r} holds a {found} dataset '
                f'({LAYOUTS[found][0]}), but {key} is a '
                f"{dataset['type']}, which reads {expected} "
                f'({LAYOUTS[expected][0]}). Point data_root at a {expected} '
                f'copy, or use a config made for {found}.')
    return '\n  '.join(dict.fromkeys(lines))
