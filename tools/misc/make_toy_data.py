"""Write small synthetic datasets in the real on-disk formats of PASCAL VOC,
COCO, ADE20K, Oxford 102 Flowers and Oxford-IIIT Pet, so the stock mmdet /
mmseg / mmpretrain dataset classes read them and a tiny model learns them
in a few hundred CPU iterations (the writers: tools/misc/toy_datasets/).

Each image shows shapes on a textured, noisy background: 1-3 for the
detection and segmentation sets, one for Flowers102 and Pets. A shape's
class is its form (circle, square, triangle, cross), and every form has a
hue of its own, so the task is learnable but not a lookup: the background
is noisy, sizes, aspect ratios and shades vary, and JPEG blurs the edges.

    python tools/misc/make_toy_data.py          # all of them, in data/toy
    python tools/misc/make_toy_data.py --dataset voc --num-train 64 \
        --img-size 192x128
    python tools/misc/make_toy_data.py --dataset flowers102 --img-size 96 \
        --num-classes 4

Layout (the roots the configs in configs/toy/ use):
    data/toy/VOCdevkit/VOC2007/{Annotations,ImageSets/Main,JPEGImages}
        (trainval and test; also VOC2007 classification)
    data/toy/VOCdevkit/VOC2012/{Annotations,ImageSets/Main,JPEGImages}
        (trainval)
    data/toy/coco/annotations/instances_{train,val}2017.json
    data/toy/coco/{train2017,val2017}/
    data/toy/ade/ADEChallengeData2016/{images,annotations}/{training,validation}
    data/toy/flowers102/{jpg/,imagelabels.mat,setid.mat}
    data/toy/oxford_pets/{images/,annotations/{trainval,test}.txt}

The functions :func:`make_voc`, :func:`make_coco`, :func:`make_ade20k`,
:func:`make_flowers102` and :func:`make_pets` do the same from Python (tests
call them with a temporary ``out_dir``).
"""
import argparse
import json
import os.path as osp
import sys
from typing import Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from toy_datasets import *  # noqa: E402,F401,F403  (the writers' names)
from toy_datasets import CLASSIFICATION, GENERATORS, parse_img_size  # noqa: E402,E501


def img_size_arg(text: str) -> Tuple[int, int]:
    try:
        return parse_img_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate small synthetic VOC / COCO / ADE20K / '
        'Flowers102 / Oxford-IIIT Pet datasets in their real on-disk '
        'formats.')
    parser.add_argument('--dataset', choices=[*GENERATORS, 'all'],
                        default='all')
    parser.add_argument('--out-dir', default='data/toy',
                        help='root of the generated datasets')
    parser.add_argument('--num-train', type=int, default=64,
                        help='training images (per year for VOC)')
    parser.add_argument('--num-val', type=int, default=32,
                        help='validation / test images')
    parser.add_argument('--img-size', default=None, type=img_size_arg,
                        help="image size: '160' (square) or WxH, e.g. "
                        "'192x128' (default 160, 96 for Flowers102 and Pets)")
    parser.add_argument('--num-classes', type=int, default=4,
                        help='classes of Flowers102 and Pets (2-4, one per '
                        'form)')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    names = list(GENERATORS) if args.dataset == 'all' else [args.dataset]
    for name in names:
        options = dict(num_train=args.num_train, num_val=args.num_val,
                       seed=args.seed)
        if args.img_size is not None:
            options['img_size'] = args.img_size
        elif name not in CLASSIFICATION:
            options['img_size'] = 160
        if name in CLASSIFICATION:
            options['num_classes'] = args.num_classes
        summary = GENERATORS[name](args.out_dir, **options)
        root = summary.pop('root')
        print(f'{name}: {root} {json.dumps(summary)}')


if __name__ == '__main__':
    main()
