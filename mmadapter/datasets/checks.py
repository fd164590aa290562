"""Datasets that cannot be trained on, stopped with the reason, the file and
the fix, when they are built (before the first iteration), and unreadable
images named when they are met.

Switched on, never by importing mmadapter, while :func:`dataset_checks` is
active: tools/train.py and tools/test.py run in it, and
:class:`~mmadapter.engine.dataset_check_hook.DatasetCheckHook` (which the
table configs' runtime base turns on) holds it for a run of the stock tools.
It then applies to mmengine's ``BaseDataset``, which every mmdet, mmseg and
mmpretrain dataset extends:

* a dataset left empty by its filters (class names that match none of the
  annotations', images all too small, an empty annotation file) says how
  many images were read, how many each filter dropped and which classes the
  annotations use, instead of mmengine's ``ValueError: need at least one
  array to concatenate``;
* an annotation file that names images missing on disk gives their count
  and the first few names;
* an image that cannot be decoded, or is truncated (a JPEG without its end
  marker, a PNG without its IEND chunk: cv2 would decode the rest as grey),
  raises :class:`BadImageError` naming the file; with
  ``MMADAPTER_SKIP_BAD_IMAGES=1`` (``tools/train.py --skip-bad-images``)
  training skips it (another sample is drawn, as mmengine does for a
  pipeline that returns None) and logs each skip with a count.
"""
import json
import os
import os.path as osp
from collections import Counter
from contextlib import contextmanager
from typing import Iterator, List, Optional
from xml.etree import ElementTree as ET

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from .config_entries import config_datasets

SKIP_ENV = 'MMADAPTER_SKIP_BAD_IMAGES'
FILE_KEYS = ('img_path', 'seg_map_path')
SHOWN = 5  # names listed in a message


class DataError(Exception):
    """Base of the dataset problems the tools report without a traceback."""


class EmptyDatasetError(DataError, ValueError):
    """No sample is left after the dataset's filters."""


class MissingImagesError(DataError, FileNotFoundError):
    """The annotation file names files that are not on disk."""


class BadImageError(DataError, OSError):
    """An image file that cannot be read (corrupted or truncated)."""


def _listed(names: List[str]) -> str:
    shown = ', '.join(names[:SHOWN])
    return shown + (f', ... ({len(names) - SHOWN} more)'
                    if len(names) > SHOWN else '')


def _is_local(dataset: BaseDataset) -> bool:
    backend = (getattr(dataset, 'backend_args', None) or {}).get(
        'backend', 'local')
    root = getattr(dataset, 'data_root', '') or ''
    return backend == 'local' and '://' not in root


# -- empty after filtering -------------------------------------------------
def annotation_classes(dataset: BaseDataset, data_list: List[dict]
                       ) -> Optional[Counter]:
    """Object counts per class name as the annotation files write them
    (COCO-style json categories, VOC-style XML objects); None for other
    formats."""
    ann_file = getattr(dataset, 'ann_file', '') or ''
    if ann_file.endswith('.json') and osp.isfile(ann_file):
        with open(ann_file) as f:
            content = json.load(f)
        if isinstance(content, dict) and 'categories' in content:
            names = {c['id']: c['name'] for c in content['categories']}
            return Counter(names.get(a.get('category_id'), '?')
                           for a in content.get('annotations', []))
    xml_paths = [d['xml_path'] for d in data_list if d.get('xml_path')]
    if xml_paths:
        counts = Counter()
        for path in xml_paths[:1000]:
            if osp.isfile(path):
                counts.update(obj.findtext('name') for obj in
                              ET.parse(path).getroot().iter('object'))
        return counts
    return None


def filter_drops(dataset: BaseDataset, data_list: List[dict]) -> List[str]:
    """How many samples each ``filter_cfg`` entry drops on its own."""
    filter_cfg = dict(getattr(dataset, 'filter_cfg', None) or {})
    lines = []
    try:
        for key, value in filter_cfg.items():
            dataset.filter_cfg = {key: value}
            dataset.data_list = list(data_list)
            kept = len(dataset.filter_data())
            lines.append(f'filter_cfg.{key}={value!r} drops '
                         f'{len(data_list) - kept} of {len(data_list)}')
    finally:
        dataset.filter_cfg = filter_cfg
        dataset.data_list = []
    return lines


def explain_empty(dataset: BaseDataset) -> str:
    name = type(dataset).__name__
    ann_file = getattr(dataset, 'ann_file', '') or '(no ann_file)'
    raw = dataset.load_data_list()
    lines = [f'{name} from {ann_file} has no sample left, so it cannot be '
             f'trained or evaluated on. Read from the annotations: '
             f'{len(raw)} images.']
    if not raw:
        lines.append('The annotation file lists no images: check that it is '
                     'the complete file of this split (a failed download or '
                     'copy leaves it empty) and that ann_file names it.')
        return '\n  '.join(lines)
    lines += filter_drops(dataset, raw)
    wanted = list((dataset.metainfo or {}).get('classes') or [])
    used = annotation_classes(dataset, raw)
    if used is not None:
        common = sorted(set(used) & set(wanted))
        lines.append('The annotations use the classes '
                     + _listed([f'{c!r} ({n})' for c, n in
                                used.most_common()]))
        lines.append(f'The config expects {len(wanted)} classes: '
                     + _listed([repr(c) for c in wanted])
                     + f'; {len(common)} of them occur in the annotations.')
        if not common:
            lines.append(
                "Fix: set the dataset's metainfo=dict(classes=(...)) to the "
                "annotations' class names (and the head's num_classes to "
                'their number), or use annotations of these classes.')
            return '\n  '.join(lines)
    lines.append('Fix: relax the filter that drops everything (filter_cfg), '
                 'or check that the images and annotations are the ones the '
                 'config expects.')
    return '\n  '.join(lines)


# -- files named but missing -----------------------------------------------
def missing_files(dataset: BaseDataset) -> List[str]:
    missing = []
    for info in dataset.data_list:
        for key in FILE_KEYS:
            path = info.get(key)
            if isinstance(path, str) and path and not osp.exists(path):
                missing.append(path)
    return missing


def check_loaded_dataset(dataset: BaseDataset) -> None:
    """Raise unless ``dataset`` (annotations loaded and filtered) has
    samples whose files are all on disk."""
    if not dataset.data_list:
        raise EmptyDatasetError(explain_empty(dataset))
    if not _is_local(dataset):
        return
    missing = missing_files(dataset)
    if missing:
        ann_file = getattr(dataset, 'ann_file', '') or '(annotations)'
        raise MissingImagesError(
            f'{ann_file} names {len(missing)} files that are not on disk '
            f'(of {len(dataset.data_list)} samples): '
            f'{_listed(missing)}. Copy the missing files (an incomplete '
            'download or extraction?), check data_root and data_prefix, or '
            'remove their entries from the annotation file.')


# -- unreadable images -------------------------------------------------------
_JPEG_END, _PNG_END = b'\xff\xd9', b'IEND'


def truncated_image(path: str) -> Optional[str]:
    """Why a JPEG or PNG file is cut short, from its last bytes; None when
    it ends as it should (or is another format)."""
    lower = path.lower()
    if not lower.endswith(('.jpg', '.jpeg', '.png')):
        return None
    try:
        size = osp.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(8)
            f.seek(max(0, size - 64))
            tail = f.read()
    except OSError as error:
        return f'cannot be opened ({error.strerror})'
    if size == 0:
        return 'the file is empty (0 bytes)'
    if head[:2] == b'\xff\xd8' and _JPEG_END not in tail:
        return f'truncated JPEG ({size} bytes, no end-of-image marker)'
    if head[:4] == b'\x89PNG' and _PNG_END not in tail:
        return f'truncated PNG ({size} bytes, no IEND chunk)'
    return None


def undecodable_image(path: str) -> Optional[str]:
    """Why PIL cannot decode the file completely; None when it can."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # PIL raises many types
        return f'cannot be decoded ({type(error).__name__}: {error})'
    return None


_skipped = Counter()


def _bad_image(dataset: BaseDataset, path: str, problem: str, error=None):
    """Skip (training with the option set) or raise."""
    if os.environ.get(SKIP_ENV) == '1' and not dataset.test_mode:
        _skipped[type(dataset).__name__] += 1
        print_log(f'Skipped unreadable image {path}: {problem} '
                  f'({sum(_skipped.values())} skipped so far in this '
                  'data-loading process).', logger='current', level=30)
        return None
    raise BadImageError(
        f'Image {path} cannot be read: {problem}. Replace the file (from '
        'the original dataset), remove its entry from '
        f"{getattr(dataset, 'ann_file', '') or 'the annotations'}, or "
        'train with tools/train.py --skip-bad-images to skip such images '
        '(each skip is logged).') from error


_original = {}


def _checked_prepare_data(self, idx):
    path = self.get_data_info(idx).get('img_path') \
        if _is_local(self) else None
    if isinstance(path, str):
        problem = truncated_image(path)
        if problem:
            return _bad_image(self, path, problem)
    try:
        return _original['prepare_data'](self, idx)
    except DataError:
        raise
    except Exception as error:
        problem = undecodable_image(path) if isinstance(path, str) and \
            osp.exists(path) else None
        if problem is None:
            if isinstance(path, str) and hasattr(error, 'add_note'):
                error.add_note(f'(while loading sample {idx}: {path})')
            raise
        return _bad_image(self, path, problem, error)


def _checked_serialize_data(self):
    check_loaded_dataset(self)
    return _original['_serialize_data'](self)


_users = []  # one entry per active dataset_checks()/enable_dataset_checks()


def enable_dataset_checks() -> None:
    """Check datasets until the matching :func:`disable_dataset_checks`
    (calls nest). The checks wrap ``BaseDataset``'s methods because the
    datasets are built inside ``runner.train()`` / ``runner.test()``,
    before any hook event, and are the stock classes."""
    if not _users:
        _original['prepare_data'] = BaseDataset.prepare_data
        _original['_serialize_data'] = BaseDataset._serialize_data
        BaseDataset.prepare_data = _checked_prepare_data
        BaseDataset._serialize_data = _checked_serialize_data
    _users.append(1)


def disable_dataset_checks() -> None:
    """End one :func:`enable_dataset_checks`; the last one puts
    ``BaseDataset``'s own methods back."""
    if not _users:
        return
    _users.pop()
    if not _users:
        BaseDataset.prepare_data = _original.pop('prepare_data')
        BaseDataset._serialize_data = _original.pop('_serialize_data')


def dataset_checks_enabled() -> bool:
    return bool(_users)


@contextmanager
def dataset_checks() -> Iterator[None]:
    """Datasets built and read inside are checked."""
    enable_dataset_checks()
    try:
        yield
    finally:
        disable_dataset_checks()


def check_annotation_files(cfg, loaders) -> None:
    """Raise :class:`EmptyDatasetError` for an annotation file of 0 bytes
    (its parser would fail with a bare JSON or XML error)."""
    for key, dataset in config_datasets(cfg, loaders):
        ann_file = dataset.get('ann_file') or ''
        root = dataset.get('data_root') or ''
        path = ann_file if not root or osp.isabs(ann_file) else \
            osp.join(root, ann_file)
        if ann_file and osp.isfile(path) and osp.getsize(path) == 0:
            raise EmptyDatasetError(
                f'{key}.ann_file -> {path!r} is empty (0 bytes): an '
                'interrupted download or copy? Copy the complete file of '
                'this split again.')
