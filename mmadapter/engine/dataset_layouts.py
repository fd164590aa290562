"""Files that mmpretrain's dataset classes read from ``data_root`` without
the config naming them (Flowers102's ``setid.mat``, Oxford-IIIT Pet's split
lists, VOC's image sets), so that the pre-flight path check can name a
missing one."""
from typing import Callable, Dict, List


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
