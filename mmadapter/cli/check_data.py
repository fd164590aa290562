"""``tools/train.py CONFIG --check-data``: read the whole dataset once
before a long run — every annotation parses, every image (and
segmentation map) opens and decodes completely, every box lies inside its
image — and report each problem with its file name.

Generic over mmengine datasets: it reads the data infos every mmdet, mmseg
and mmpretrain dataset produces (``img_path``, ``seg_map_path``,
``instances[*].bbox``), not a format of its own.
"""
import copy
import multiprocessing
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import List, Sequence

from mmengine.config import Config
from mmengine.registry import DATASETS, init_default_scope

from mmadapter.datasets.checks import (
    DataError,
    explain_empty,
    missing_files,
    truncated_image,
)
from mmadapter.datasets.config_entries import config_datasets

BOX_TOLERANCE = 1.0  # pixels (VOC's 1-based corners)
SHOWN = 20


@dataclass
class DatasetReport:
    key: str
    description: str
    samples: int = 0
    problems: List[str] = field(default_factory=list)


def image_size(path: str):
    """(width, height) after a complete decode; raises when it fails."""
    from PIL import Image
    with Image.open(path) as image:
        image.load()
        return image.size


def sample_problems(info: dict) -> List[str]:
    """Every problem of one data info, each starting with its file."""
    problems = []
    path = info.get('img_path')
    size = None
    if isinstance(path, str):
        truncated = truncated_image(path) if osp.exists(path) else None
        if not osp.exists(path):
            return [f'{path}: image not found']
        if truncated:
            problems.append(f'{path}: {truncated}')
        try:
            size = image_size(path)
        except Exception as error:  # PIL raises many types
            return problems + [f'{path}: cannot be decoded '
                               f'({type(error).__name__}: {error})']
        noted = (info.get('width'), info.get('height'))
        if None not in noted and tuple(noted) != size:
            problems.append(f'{path}: the annotations give its size as '
                            f'{noted[0]}x{noted[1]}, the image is '
                            f'{size[0]}x{size[1]}')
    for i, instance in enumerate(info.get('instances') or []):
        box = instance.get('bbox')
        if box is None or size is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        width, height = size
        if x2 <= x1 or y2 <= y1:
            problems.append(f'{path}: box {i} {list(box)} is empty '
                            '(x2 <= x1 or y2 <= y1)')
        elif x1 < -BOX_TOLERANCE or y1 < -BOX_TOLERANCE or \
                x2 > width + BOX_TOLERANCE or y2 > height + BOX_TOLERANCE:
            problems.append(f'{path}: box {i} {list(box)} is outside the '
                            f'{width}x{height} image')
    seg = info.get('seg_map_path')
    if isinstance(seg, str):
        try:
            seg_size = image_size(seg)
        except FileNotFoundError:
            problems.append(f'{seg}: segmentation map not found')
        except Exception as error:
            problems.append(f'{seg}: cannot be decoded '
                            f'({type(error).__name__}: {error})')
        else:
            if size is not None and seg_size != size:
                problems.append(f'{seg}: {seg_size[0]}x{seg_size[1]}, its '
                                f'image {path} is {size[0]}x{size[1]}')
    return problems


def build_unchecked(dataset_cfg: dict):
    """The dataset with its annotations loaded and filtered, without the
    build-time checks (they are reported here instead of raised)."""
    dataset_cfg = copy.deepcopy(dataset_cfg)
    dataset_cfg.update(pipeline=[], serialize_data=False, lazy_init=True)
    dataset = DATASETS.build(dataset_cfg)
    dataset.full_init()
    return dataset


def scan(key: str, dataset_cfg: dict, workers: int) -> DatasetReport:
    report = DatasetReport(key, f"{dataset_cfg.get('type')} "
                           f"({dataset_cfg.get('ann_file') or 'no ann_file'}"
                           ')')
    try:
        dataset = build_unchecked(dataset_cfg)
    except DataError as error:
        report.problems.append(str(error))
        return report
    except Exception as error:
        report.problems.append(
            f'the annotations cannot be read: {type(error).__name__}: '
            f'{error}')
        return report
    infos = dataset.data_list
    report.samples = len(infos)
    if not infos:
        report.problems.append(explain_empty(dataset))
        return report
    missing = set(missing_files(dataset))
    report.problems += [f'{p}: not found' for p in sorted(missing)]
    with multiprocessing.Pool(workers) as pool:
        for problems in pool.imap(sample_problems, infos, chunksize=32):
            report.problems += [p for p in problems
                                if p.split(':')[0] not in missing]
    return report


def check_data(cfg: Config, loaders: Sequence[str],
               out_file: str) -> List[DatasetReport]:
    """Scan every leaf dataset of the named dataloaders; print a summary
    and the first problems, write all of them to ``out_file``."""
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    workers = max(1, min(os.cpu_count() or 1, 8))
    reports, seen = [], set()
    for key, dataset_cfg in config_datasets(cfg, loaders):
        identity = repr(sorted((k, str(v)) for k, v in dataset_cfg.items()
                               if k != 'pipeline'))
        if identity in seen:  # val and test are often the same set
            continue
        seen.add(identity)
        reports.append(scan(key, dataset_cfg, workers))
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    with open(out_file, 'w') as f:
        for report in reports:
            f.write(f'{report.key}: {report.description}, {report.samples} '
                    f'samples, {len(report.problems)} problems\n')
            f.writelines(f'  {p}\n' for p in report.problems)
    for report in reports:
        print(f'{report.key}: {report.description}: {report.samples} '
              f'samples, {len(report.problems)} problems')
        for problem in report.problems[:SHOWN]:
            print(f'  {problem}')
        if len(report.problems) > SHOWN:
            print(f'  ... {len(report.problems) - SHOWN} more in {out_file}')
    return reports
