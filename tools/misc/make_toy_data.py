"""Write small synthetic datasets in the real on-disk formats of PASCAL VOC,
COCO and ADE20K, so the stock mmdet / mmseg dataset classes read them and a
tiny model learns them in a few hundred CPU iterations.

Each image shows 1-3 non-overlapping shapes on a textured, noisy background.
A shape's class is its form (circle, square, triangle, cross), and every
form has a hue of its own, so the task is learnable but not a lookup: the
background is noisy, sizes, aspect ratios and shades vary, and JPEG blurs the
edges.

    python tools/misc/make_toy_data.py          # all three, in data/toy
    python tools/misc/make_toy_data.py --dataset voc --num-train 64 \
        --img-size 192x128

Layout (the roots the configs in configs/toy/ use):
    data/toy/VOCdevkit/VOC2007/{Annotations,ImageSets/Main,JPEGImages}
        (trainval and test)
    data/toy/VOCdevkit/VOC2012/{Annotations,ImageSets/Main,JPEGImages}
        (trainval)
    data/toy/coco/annotations/instances_{train,val}2017.json
    data/toy/coco/{train2017,val2017}/
    data/toy/ade/ADEChallengeData2016/{images,annotations}/{training,validation}

The functions :func:`make_voc`, :func:`make_coco` and :func:`make_ade20k`
do the same from Python (tests call them with a temporary ``out_dir``).
"""
import argparse
import colorsys
import json
import os
import os.path as osp
import shutil
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple, Union
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw

# One form per class, each with a hue of its own (degrees).
FORM_HUES = {'circle': 0, 'square': 120, 'triangle': 230, 'cross': 55}
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat')  # circle..cross
COCO_CLASSES = ('circle', 'square', 'triangle')
ADE_CLASSES = ('circle', 'square', 'triangle', 'cross')  # labels 1..4
MARKER = '.mmadapter_toy_dataset'
MIN_BOX = 36  # mmdet drops boxes under 32 px (after its VOC minus-one)

ImgSize = Union[int, Tuple[int, int], Sequence[int], str]


@dataclass
class Shape:
    form: str
    polygon: List[Tuple[float, float]]
    mask: np.ndarray  # bool, H x W

    @property
    def box(self) -> Tuple[int, int, int, int]:
        """Tight box of the drawn pixels: x0, y0, x1, y1 (x1, y1 exclusive)."""
        ys, xs = np.nonzero(self.mask)
        return (int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                int(ys.max()) + 1)


def parse_img_size(size: ImgSize) -> Tuple[int, int]:
    """``128`` / ``'128'`` -> (128, 128); ``'192x128'`` or (192, 128) ->
    width 192, height 128."""
    text = size
    try:
        if isinstance(size, str):
            size = [int(p) for p in size.lower().split('x')]
        if isinstance(size, int):
            size = [size]
        size = [int(s) for s in size]
        width, height = size * 2 if len(size) == 1 else size
    except ValueError:
        raise ValueError(f'Image size {text!r} is not understood: give one '
                         "integer (square) or WIDTHxHEIGHT, e.g. '192x128'."
                         ) from None
    if min(width, height) < 2 * MIN_BOX:
        raise ValueError(
            f'Image size {width}x{height} is too small: shapes are at least '
            f'{MIN_BOX} px, so both sides must be >= {2 * MIN_BOX}.')
    return width, height


def textured_background(rng: np.random.Generator, width: int,
                        height: int) -> np.ndarray:
    """Low-saturation colour field: a random tint, smooth blotches and a
    few soft stripes."""
    tint = rng.uniform(70, 170) + rng.uniform(-20, 20, size=3)
    grid = (height // 16 + 2, width // 16 + 2)
    coarse = (rng.normal(0, 25, size=(*grid, 1)) +
              rng.normal(0, 12, size=(*grid, 3)))
    blotches = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8))
        .resize((width, height), Image.BILINEAR), dtype=np.float32) - 128
    period, phase = rng.uniform(8, 30), rng.uniform(0, 2 * np.pi)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:height, :width]
    stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) /
                          period * 2 * np.pi + phase)
    return tint + blotches + stripes[..., None]


def form_polygon(form: str, x0: float, y0: float, w: float, h: float,
                 rng: np.random.Generator) -> List[Tuple[float, float]]:
    """Vertices of ``form`` filling the box (x0, y0, w, h)."""
    if form == 'circle':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return list(zip(x0 + w / 2 + (w - 1) / 2 * np.cos(t),
                        y0 + h / 2 + (h - 1) / 2 * np.sin(t)))
    if form == 'square':
        return [(x0, y0), (x0 + w - 1, y0), (x0 + w - 1, y0 + h - 1),
                (x0, y0 + h - 1)]
    if form == 'triangle':
        apex = x0 + rng.uniform(0.25, 0.75) * (w - 1)
        if rng.random() < 0.5:  # pointing up
            return [(apex, y0), (x0 + w - 1, y0 + h - 1), (x0, y0 + h - 1)]
        return [(x0, y0), (x0 + w - 1, y0), (apex, y0 + h - 1)]
    if form == 'cross':
        ax, ay = w / 3, h / 3  # arm thickness
        xs = (x0, x0 + ax, x0 + w - 1 - ax, x0 + w - 1)
        ys = (y0, y0 + ay, y0 + h - 1 - ay, y0 + h - 1)
        return [(xs[1], ys[0]), (xs[2], ys[0]), (xs[2], ys[1]), (xs[3], ys[1]),
                (xs[3], ys[2]), (xs[2], ys[2]), (xs[2], ys[3]), (xs[1], ys[3]),
                (xs[1], ys[2]), (xs[0], ys[2]), (xs[0], ys[1]), (xs[1], ys[1])]
    raise ValueError(f'Unknown form {form!r}; known: {", ".join(FORM_HUES)}')


def form_colour(form: str, rng: np.random.Generator) -> np.ndarray:
    hue = (FORM_HUES[form] + rng.uniform(-10, 10)) % 360 / 360
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0),
                              rng.uniform(0.65, 1.0))
    return np.array(rgb) * 255


def place_boxes(rng: np.random.Generator, width: int, height: int,
                count: int) -> List[Tuple[int, int, int, int]]:
    """Up to ``count`` boxes (x0, y0, w, h), at least MIN_BOX wide and high,
    that do not touch each other."""
    max_side = max(MIN_BOX, int(0.55 * min(width, height)))
    boxes: List[Tuple[int, int, int, int]] = []
    for _ in range(50 * count):
        if len(boxes) == count:
            break
        side = rng.integers(MIN_BOX, max_side + 1)
        w = int(np.clip(side * rng.uniform(0.8, 1.25), MIN_BOX, width - 2))
        h = int(np.clip(side * rng.uniform(0.8, 1.25), MIN_BOX, height - 2))
        x0 = int(rng.integers(1, width - w))
        y0 = int(rng.integers(1, height - h))
        gap = 4
        if all(x0 >= bx + bw + gap or bx >= x0 + w + gap or y0 >= by + bh + gap
               or by >= y0 + h + gap for bx, by, bw, bh in boxes):
            boxes.append((x0, y0, w, h))
    return boxes


def draw_scene(rng: np.random.Generator, width: int, height: int,
               forms: Sequence[str]) -> Tuple[Image.Image, List[Shape]]:
    """An RGB image with 1-3 shapes of ``forms`` and the shapes drawn."""
    canvas = textured_background(rng, width, height)
    shapes = []
    for x0, y0, w, h in place_boxes(rng, width, height, rng.integers(1, 4)):
        form = forms[rng.integers(len(forms))]
        polygon = form_polygon(form, x0, y0, w, h, rng)
        mask_img = Image.new('L', (width, height), 0)
        ImageDraw.Draw(mask_img).polygon(polygon, fill=1)
        mask = np.asarray(mask_img, dtype=bool)
        canvas[mask] = form_colour(form, rng)
        shapes.append(Shape(form, polygon, mask))
    canvas += rng.normal(0, 10, size=canvas.shape)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    return image, shapes


def prepare_root(root: str) -> None:
    """Create ``root`` for a generated dataset, replacing an earlier
    generated one; never delete a directory this script did not write."""
    if osp.isdir(root) and os.listdir(root):
        if not osp.isfile(osp.join(root, MARKER)):
            raise FileExistsError(
                f'{root} exists and was not written by make_toy_data.py; '
                'refusing to overwrite it. Choose another --out-dir.')
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)
    with open(osp.join(root, MARKER), 'w') as f:
        f.write('Generated by tools/misc/make_toy_data.py; safe to delete.\n')


def split_rng(seed: int, dataset: str, split: str) -> np.random.Generator:
    """An independent, reproducible stream per dataset and split."""
    key = [seed] + [ord(c) for c in f'{dataset}/{split}']
    return np.random.default_rng(key)


def scenes(rng, count, size, forms):
    width, height = parse_img_size(size)
    for _ in range(count):
        yield draw_scene(rng, width, height, forms)


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
        add(obj, 'name', VOC_CLASSES[ADE_CLASSES.index(shape.form)])
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
        for image, shapes in scenes(rng, count, img_size, ADE_CLASSES):
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


# -------------------------------------------------------------------- ADE20K
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


GENERATORS = dict(voc=make_voc, coco=make_coco, ade20k=make_ade20k)


def img_size_arg(text: str) -> Tuple[int, int]:
    try:
        return parse_img_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate small synthetic VOC / COCO / ADE20K datasets '
        'in their real on-disk formats.')
    parser.add_argument('--dataset', choices=[*GENERATORS, 'all'],
                        default='all')
    parser.add_argument('--out-dir', default='data/toy',
                        help='root of the generated datasets')
    parser.add_argument('--num-train', type=int, default=64,
                        help='training images (per year for VOC)')
    parser.add_argument('--num-val', type=int, default=32,
                        help='validation / test images')
    parser.add_argument('--img-size', default='160', type=img_size_arg,
                        help="image size: '160' (square) or WxH, e.g. "
                        "'192x128'")
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    names = list(GENERATORS) if args.dataset == 'all' else [args.dataset]
    for name in names:
        summary = GENERATORS[name](args.out_dir, num_train=args.num_train,
                                   num_val=args.num_val,
                                   img_size=args.img_size, seed=args.seed)
        root = summary.pop('root')
        print(f'{name}: {root} {json.dumps(summary)}')


if __name__ == '__main__':
    main()
