"""Segmentation datasets in their real on-disk formats: ADE20K (JPEG images,
single-channel PNG label maps)."""
import os
import os.path as osp

import numpy as np
from PIL import Image

from .scenes import FORMS, ImgSize, prepare_root, scenes, split_rng

ADE_CLASSES = FORMS  # labels 1..4


def make_ade20k(out_dir: str = 'data/toy', num_train: int = 64,
                num_val: int = 32, img_size: ImgSize = 160,
                seed: int = 0) -> dict:
    """Write ``out_dir/ade/ADEChallengeData2016``: JPEG images and
    single-channel PNG label maps, 0 = unlabelled (ignored by mmseg's
    ``reduce_zero_label``), shapes labelled 1..4 (circle, square, triangle,
    cross).

    Returns ``{'root': ..., 'training': {'images': n, 'instances': m,
    'labelled_pixels': p}, 'validation': {...}}``.
    """
    root = osp.join(out_dir, 'ade', 'ADEChallengeData2016')
    prepare_root(root)
    summary = dict(root=root)
    for split, count, prefix in (('training', num_train, 'ADE_train'),
                                 ('validation', num_val, 'ADE_val')):
        image_dir = osp.join(root, 'images', split)
        label_dir = osp.join(root, 'annotations', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        rng = split_rng(seed, 'ade20k', split)
        instances = labelled = 0
        for index, (image, shapes) in enumerate(
                scenes(rng, count, img_size, ADE_CLASSES), start=1):
            stem = f'{prefix}_{index:08d}'
            labels = np.zeros((image.height, image.width), dtype=np.uint8)
            for shape in shapes:
                labels[shape.mask] = ADE_CLASSES.index(shape.form) + 1
            image.save(osp.join(image_dir, f'{stem}.jpg'), quality=95)
            Image.fromarray(labels, mode='L').save(
                osp.join(label_dir, f'{stem}.png'))
            instances += len(shapes)
            labelled += int((labels > 0).sum())
        summary[split] = dict(images=count, instances=instances,
                              labelled_pixels=labelled)
    return summary
