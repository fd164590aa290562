"""Detection datasets in their real on-disk formats: PASCAL VOC (XML boxes)
and COCO (instances JSON with polygon masks)."""
import json
import os
import os.path as osp
from typing import Dict, Sequence
from xml.etree import ElementTree as ET

from .scenes import FORMS, ImgSize, Shape, prepare_root, scenes, split_rng

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat')  # circle..cross
COCO_CLASSES = ('circle', 'square', 'triangle')


# ----------------------------------------------------------------------- VOC
def voc_xml(stem: str, folder: str, width: int, height: int,
            shapes: Sequence[Shape]) -> ET.ElementTree:
    root = ET.Element('annotation')

    def add(parent, tag, text=None):
        node = ET.SubElement(parent, tag)
        if text is not None:
            node.text = str(text)
        return node

    add(root, 'folder', folder)
    add(root, 'filename', f'{stem}.jpg')
    source = add(root, 'source')
    add(source, 'database', 'mmadapter toy VOC')
    size = add(root, 'size')
    add(size, 'width', width)
    add(size, 'height', height)
    add(size, 'depth', 3)
    add(root, 'segmented', 0)
    for shape in shapes:
        x0, y0, x1, y1 = shape.box
        obj = add(root, 'object')
        add(obj, 'name', VOC_CLASSES[FORMS.index(shape.form)])
        add(obj, 'pose', 'Unspecified')
        add(obj, 'truncated', 0)
        add(obj, 'difficult', 0)
        bndbox = add(obj, 'bndbox')
        # VOC boxes are 1-based and inclusive
        add(bndbox, 'xmin', x0 + 1)
        add(bndbox, 'ymin', y0 + 1)
        add(bndbox, 'xmax', x1)
        add(bndbox, 'ymax', y1)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def write_voc_year(year_dir: str, year: str, splits: Dict[str, int],
                   img_size: ImgSize, seed: int) -> Dict[str, dict]:
    for sub in ('Annotations', 'JPEGImages', osp.join('ImageSets', 'Main')):
        os.makedirs(osp.join(year_dir, sub), exist_ok=True)
    summary, index = {}, 0
    for split, count in splits.items():
        rng = split_rng(seed, year, split)
        stems, num_objects = [], 0
        for image, shapes in scenes(rng, count, img_size, FORMS):
            index += 1
            stem = f'{index:06d}' if year == 'VOC2007' else f'2012_{index:06d}'
            image.save(osp.join(year_dir, 'JPEGImages', f'{stem}.jpg'),
                       quality=95)
            voc_xml(stem, year, image.width, image.height, shapes).write(
                osp.join(year_dir, 'Annotations', f'{stem}.xml'))
            stems.append(stem)
            num_objects += len(shapes)
        with open(osp.join(year_dir, 'ImageSets', 'Main', f'{split}.txt'),
                  'w') as f:
            f.write(''.join(f'{s}\n' for s in stems))
        summary[split] = dict(images=len(stems), instances=num_objects)
    return summary


def make_voc(out_dir: str = 'data/toy', num_train: int = 64,
             num_val: int = 32, img_size: ImgSize = 160,
             seed: int = 0) -> dict:
    """Write ``out_dir/VOCdevkit``: VOC2007 (trainval, test) and VOC2012
    (trainval), classes 'aeroplane', 'bicycle', 'bird', 'boat'.

    Returns ``{'root': ..., 'VOC2007': {'trainval': {'images': n,
    'instances': m}, 'test': {...}}, 'VOC2012': {'trainval': {...}}}``.
    """
    root = osp.join(out_dir, 'VOCdevkit')
    prepare_root(root)
    summary = dict(root=root)
    summary['VOC2007'] = write_voc_year(
        osp.join(root, 'VOC2007'), 'VOC2007',
        dict(trainval=num_train, test=num_val), img_size, seed)
    summary['VOC2012'] = write_voc_year(
        osp.join(root, 'VOC2012'), 'VOC2012', dict(trainval=num_train),
        img_size, seed)
    return summary


# ---------------------------------------------------------------------- COCO
def coco_split(root: str, split: str, count: int, img_size: ImgSize,
               seed: int, category_names: Sequence[str] = COCO_CLASSES
               ) -> dict:
    image_dir = osp.join(root, f'{split}2017')
    os.makedirs(image_dir, exist_ok=True)
    rng = split_rng(seed, 'coco', split)
    images, annotations = [], []
    for image_id, (image, shapes) in enumerate(
            scenes(rng, count, img_size, COCO_CLASSES), start=1):
        file_name = f'{image_id:012d}.jpg'
        image.save(osp.join(image_dir, file_name), quality=95)
        images.append(dict(id=image_id, file_name=file_name,
                           width=image.width, height=image.height))
        for shape in shapes:
            x0, y0, x1, y1 = shape.box
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id,
                category_id=COCO_CLASSES.index(shape.form) + 1,
                segmentation=[[round(float(c), 2) for xy in shape.polygon
                               for c in xy]],
                area=float(shape.mask.sum()),
                bbox=[x0, y0, x1 - x0, y1 - y0], iscrowd=0))
    categories = [dict(id=i, name=name, supercategory='shape')
                  for i, name in enumerate(category_names, start=1)]
    content = dict(info=dict(description='mmadapter toy COCO', version='1.0'),
                   licenses=[], images=images, annotations=annotations,
                   categories=categories)
    with open(osp.join(root, 'annotations', f'instances_{split}2017.json'),
              'w') as f:
        json.dump(content, f)
    return dict(images=len(images), instances=len(annotations))


def make_coco(out_dir: str = 'data/toy', num_train: int = 64,
              num_val: int = 32, img_size: ImgSize = 160,
              seed: int = 0,
              category_names: Sequence[str] = COCO_CLASSES) -> dict:
    """Write ``out_dir/coco`` (instances_{train,val}2017.json with polygon
    masks; categories 1..3 'circle', 'square', 'triangle'). With
    ``category_names`` (at least three, e.g. the 80 of COCO) the file lists
    those categories and the three shapes take the first three.

    Returns ``{'root': ..., 'train': {'images': n, 'instances': m},
    'val': {...}}``.
    """
    root = osp.join(out_dir, 'coco')
    prepare_root(root)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    summary = dict(root=root)
    for split, count in (('train', num_train), ('val', num_val)):
        summary[split] = coco_split(root, split, count, img_size, seed,
                                    category_names)
    return summary
