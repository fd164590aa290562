"""Small synthetic datasets in the real on-disk formats of the detection,
segmentation and classification sets the configs train on (see
tools/misc/make_toy_data.py for the command line)."""
from .classification import PET_BREEDS, make_flowers102, make_pets
from .detection import COCO_CLASSES, VOC_CLASSES, make_coco, make_voc
from .scenes import (
                     FORM_HUES,
                     FORMS,
                     MARKER,
                     MIN_BOX,
                     Shape,
                     draw_scene,
                     parse_img_size,
                     prepare_root,
                     split_rng,
)
from .segmentation import ADE_CLASSES, make_ade20k

#: --dataset name -> writer
GENERATORS = dict(voc=make_voc, coco=make_coco, ade20k=make_ade20k,
                  flowers102=make_flowers102, pets=make_pets)
#: writers that take num_classes (one class per form)
CLASSIFICATION = ('flowers102', 'pets')

__all__ = [
    'ADE_CLASSES', 'CLASSIFICATION', 'COCO_CLASSES', 'FORM_HUES', 'FORMS',
    'GENERATORS', 'MARKER', 'MIN_BOX', 'PET_BREEDS', 'Shape', 'VOC_CLASSES',
    'draw_scene', 'make_ade20k', 'make_coco', 'make_flowers102', 'make_pets',
    'make_voc', 'parse_img_size', 'prepare_root', 'split_rng'
]
