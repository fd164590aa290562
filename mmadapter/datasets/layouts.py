"""What the folder of each known dataset looks like on disk.

* the files mmpretrain's dataset classes read from ``data_root`` without the
  config naming them (Flowers102's ``setid.mat``, Oxford-IIIT Pet's split
  lists, VOC's image sets), so that the pre-flight path check can name a
  missing one (:func:`implicit_files`);
* which known dataset a folder holds, so that a ``data_root`` pointing at
  another dataset (a COCO folder given to a VOC config) is named as such
  instead of as a list of missing files (:func:`layout_mismatches`).
"""
import glob
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence

from mmengine.config import Config

from .config_entries import config_datasets


def _voc(dataset_cfg: dict) -> List[str]:
    image_set = dataset_cfg.get('image_set_path') or \
        f"ImageSets/Main/{dataset_cfg.get('split', 'trainval')}.txt"
    if dataset_cfg.get('data_prefix'):
        return [image_set]  # the prefixes are checked as configured
    return ['JPEGImages/', 'Annotations/', image_set]


def _pets(dataset_cfg: dict) -> List[str]:
    split = 'test' if dataset_cfg.get('split') == 'test' else 'trainval'
    return ['images/', f'annotations/{split}.txt']


#: dataset type (without scope) -> files under data_root it needs
#: (directories end in '/')
IMPLICIT_FILES: Dict[str, Callable[[dict], List[str]]] = {
    'Flowers102': lambda cfg: ['jpg/', 'imagelabels.mat', 'setid.mat'],
    'OxfordIIITPet': _pets,
    'VOC': _voc,
    'VOCSingleLabel': _voc,
}


def implicit_files(dataset_cfg: dict) -> List[str]:
    """Paths relative to ``data_root`` the dataset's class reads on its
    own ([] for types that name all their files in the config)."""
    name = str(dataset_cfg.get('type', '')).split('.')[-1]
    layout = IMPLICIT_FILES.get(name)
    return layout(dataset_cfg) if layout else []


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
    'Flowers102': ('jpg/, imagelabels.mat, setid.mat',
                   ('imagelabels.mat', 'setid.mat')),
    'Oxford-IIIT Pet': ('images/, annotations/trainval.txt and test.txt',
                        ('annotations/trainval.txt', 'annotations/test.txt')),
}
# dataset class name (without scope) -> the layout it reads
DATASET_LAYOUTS = {
    'VOCDataset': 'Pascal VOC', 'CocoDataset': 'COCO',
    'ADE20KDataset': 'ADE20K', 'CityscapesDataset': 'Cityscapes',
    'ImageNet': 'ImageNet', 'ImageNet21k': 'ImageNet',
    'Flowers102': 'Flowers102', 'OxfordIIITPet': 'Oxford-IIIT Pet',
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
