"""Classification datasets in the on-disk formats mmpretrain's own dataset
classes read: Oxford 102 Flowers (``Flowers102``) and Oxford-IIIT Pet
(``OxfordIIITPet``). Each image shows one shape; its form is the class.
(VOC2007 classification reads the VOC detection layout: ``make_voc``.)"""
import os
import os.path as osp
from typing import List

import numpy as np

from .scenes import (
    FORMS,
    ImgSize,
    draw_scene,
    parse_img_size,
    prepare_root,
    split_rng,
)

# The first Oxford-IIIT Pet breeds (mmpretrain's class order): name, species
# (1 cat, 2 dog), breed id within the species.
PET_BREEDS = (('Abyssinian', 1, 1), ('american_bulldog', 2, 1),
              ('american_pit_bull_terrier', 2, 2), ('basset_hound', 2, 3))


def check_num_classes(num_classes: int) -> None:
    if not 2 <= num_classes <= len(FORMS):
        raise ValueError(
            f'num_classes={num_classes}: the toy classification sets have '
            f'one class per form ({", ".join(FORMS)}), 2 to {len(FORMS)}.')


def balanced_labels(rng: np.random.Generator, count: int,
                    num_classes: int) -> List[int]:
    """``count`` labels 0..num_classes-1, as even as possible, shuffled."""
    labels = np.arange(count) % num_classes
    rng.shuffle(labels)
    return [int(label) for label in labels]


def one_shape_image(rng: np.random.Generator, img_size: ImgSize,
                    label: int):
    width, height = parse_img_size(img_size)
    image, _ = draw_scene(rng, width, height, [FORMS[label]], count=1)
    return image


def make_flowers102(out_dir: str = 'data/toy', num_train: int = 64,
                    num_val: int = 32, img_size: ImgSize = 96,
                    num_classes: int = 4, seed: int = 0) -> dict:
    """Write ``out_dir/flowers102``: ``jpg/image_NNNNN.jpg``,
    ``imagelabels.mat`` (``labels``, 1-based) and ``setid.mat`` (``trnid``,
    ``valid``, ``tstid``: 1-based image ids, interleaved as in the real
    set). ``num_train`` images are split between train and val (mmpretrain's
    ``trainval`` reads both), ``num_val`` are the test split.

    Returns ``{'root': ..., 'train': {'images': n}, 'val': ..., 'test':
    ...}``.
    """
    import mat4py  # mmpretrain's own reader of these files
    check_num_classes(num_classes)
    if num_train < 4 or num_val < 2:
        raise ValueError('Flowers102 needs num_train >= 4 and num_val >= 2 '
                         '(every split of setid.mat holds a list).')
    root = osp.join(out_dir, 'flowers102')
    prepare_root(root)
    os.makedirs(osp.join(root, 'jpg'))
    counts = dict(trnid=num_train // 2, valid=num_train - num_train // 2,
                  tstid=num_val)
    total = sum(counts.values())
    rng = split_rng(seed, 'flowers102', 'all')
    ids = [int(i) for i in rng.permutation(total) + 1]
    splits, labels, start = {}, [0] * total, 0
    for key, count in counts.items():
        splits[key] = sorted(ids[start:start + count])
        for image_id, label in zip(splits[key], balanced_labels(
                rng, count, num_classes)):
            labels[image_id - 1] = label
        start += count
    for image_id, label in enumerate(labels, start=1):
        one_shape_image(rng, img_size, label).save(
            osp.join(root, 'jpg', f'image_{image_id:05d}.jpg'), quality=95)
    mat4py.savemat(osp.join(root, 'imagelabels.mat'),
                   dict(labels=[label + 1 for label in labels]))
    mat4py.savemat(osp.join(root, 'setid.mat'), splits)
    names = dict(trnid='train', valid='val', tstid='test')
    return dict(root=root, **{names[k]: dict(images=len(v))
                              for k, v in splits.items()})


def make_pets(out_dir: str = 'data/toy', num_train: int = 64,
              num_val: int = 32, img_size: ImgSize = 96,
              num_classes: int = 4, seed: int = 0) -> dict:
    """Write ``out_dir/oxford_pets``: ``images/<Breed>_<n>.jpg`` and
    ``annotations/{trainval,test}.txt`` (``<Breed>_<n> CLASS-ID SPECIES
    BREED-ID``, class ids 1-based in mmpretrain's class order).

    Returns ``{'root': ..., 'trainval': {'images': n}, 'test': ...}``.
    """
    check_num_classes(num_classes)
    root = osp.join(out_dir, 'oxford_pets')
    prepare_root(root)
    os.makedirs(osp.join(root, 'images'))
    os.makedirs(osp.join(root, 'annotations'))
    summary, per_breed = dict(root=root), [0] * num_classes
    for split, count in (('trainval', num_train), ('test', num_val)):
        rng = split_rng(seed, 'pets', split)
        lines = []
        for label in balanced_labels(rng, count, num_classes):
            name, species, breed_id = PET_BREEDS[label]
            per_breed[label] += 1
            stem = f'{name}_{per_breed[label]}'
            one_shape_image(rng, img_size, label).save(
                osp.join(root, 'images', f'{stem}.jpg'), quality=95)
            lines.append(f'{stem} {label + 1} {species} {breed_id}\n')
        with open(osp.join(root, 'annotations', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
        summary[split] = dict(images=count)
    return summary
