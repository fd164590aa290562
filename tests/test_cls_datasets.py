"""The generated classification sets are read by mmpretrain's own dataset
classes with the classes the generator drew, and VOCSingleLabel keeps the
first annotated object of each image."""
import colorsys
import os.path as osp
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from e2e_utils import toy_data
from mmadapter.datasets import VOCSingleLabel


def saturated_hue(path) -> float:
    """Median hue (degrees) of the strongly coloured pixels: the shape (the
    background is a low-saturation field)."""
    rgb = np.asarray(Image.open(path).convert('RGB'), dtype=np.float32) / 255
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in rgb.reshape(-1, 3)])
    strong = hsv[(hsv[:, 1] > 0.6) & (hsv[:, 2] > 0.5)]
    # circular median around the mean direction
    angles = strong[:, 0] * 2 * np.pi
    mean = np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())
    offsets = (angles - mean + np.pi) % (2 * np.pi) - np.pi
    return float(np.degrees(mean + np.median(offsets)) % 360)


def assert_images_show_their_class(dataset):
    forms = toy_data().FORMS
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        expected = toy_data().FORM_HUES[forms[info['gt_label']]]
        hue = saturated_hue(info['img_path'])
        distance = min(abs(hue - expected), 360 - abs(hue - expected))
        assert distance < 20, (info['img_path'], hue, expected)


@pytest.fixture(scope='module')
def out(tmp_path_factory):
    return str(tmp_path_factory.mktemp('cls'))


def test_flowers102_read_by_mmpretrain(out):
    from mmpretrain.datasets import Flowers102
    summary = toy_data().make_flowers102(out, num_train=8, num_val=6,
                                         img_size=96, num_classes=3)
    sizes = {split: len(Flowers102(data_root=summary['root'], split=split))
             for split in ('train', 'val', 'trainval', 'test')}
    assert sizes == dict(train=4, val=4, trainval=8, test=6)
    for split in ('train', 'val', 'test'):  # each split balanced
        dataset = Flowers102(data_root=summary['root'], split=split)
        labels = Counter(dataset.get_data_info(i)['gt_label']
                         for i in range(len(dataset)))
        assert sorted(labels) == [0, 1, 2]
        assert max(labels.values()) - min(labels.values()) <= 1
        assert_images_show_their_class(dataset)
    assert Image.open(dataset.get_data_info(0)['img_path']).size == (96, 96)


def test_pets_read_by_mmpretrain(out):
    from mmpretrain.datasets import OxfordIIITPet
    summary = toy_data().make_pets(out, num_train=8, num_val=4)
    for split, count in (('trainval', 8), ('test', 4)):
        dataset = OxfordIIITPet(data_root=summary['root'], split=split)
        assert len(dataset) == count
        assert_images_show_their_class(dataset)
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            breed = dataset.CLASSES[info['gt_label']]
            assert osp.basename(info['img_path']).startswith(breed + '_')


def test_too_few_classes_or_images_are_clear_errors(out):
    with pytest.raises(ValueError, match='num_classes=5'):
        toy_data().make_pets(out, num_classes=5)
    with pytest.raises(ValueError, match='num_train >= 4'):
        toy_data().make_flowers102(out, num_train=2, num_val=2)


def test_voc_single_label_keeps_the_first_object(out):
    from mmpretrain.datasets import VOC
    root = osp.join(toy_data().make_voc(out, num_train=6, num_val=4,
                                        img_size=96)['root'], 'VOC2007')
    single = VOCSingleLabel(data_root=root, split='trainval')
    multi = VOC(data_root=root, split='trainval')
    assert len(single) == len(multi) == 6
    several = 0
    for i in range(len(single)):
        info = single.get_data_info(i)
        stem = osp.splitext(osp.basename(info['img_path']))[0]
        with open(osp.join(root, 'Annotations', f'{stem}.xml')) as f:
            first = f.read().split('<name>')[1].split('</name>')[0]
        assert info['gt_label'] == single.CLASSES.index(first)
        assert 'gt_label_difficult' not in info
        assert single.get_cat_ids(i) == [info['gt_label']]
        labels = multi.get_data_info(i)['gt_label']
        assert info['gt_label'] in labels
        several += len(labels) > 1
    assert several  # the first object is a choice, not the only label


def test_voc_single_label_needs_a_known_object(out, tmp_path):
    import shutil
    root = tmp_path / 'VOC2007'
    voc = toy_data().make_voc(str(tmp_path / 'gen'), num_train=1, num_val=1,
                              img_size=96)
    shutil.copytree(osp.join(voc['root'], 'VOC2007'), root)
    xml = root / 'Annotations' / '000001.xml'
    text = xml.read_text()
    for name in ('aeroplane', 'bicycle', 'bird', 'boat'):
        text = text.replace(f'<name>{name}</name>', '<name>unicorn</name>')
    xml.write_text(text)
    with pytest.raises(ValueError, match='000001.xml has no object'):
        VOCSingleLabel(data_root=str(root), split='trainval')
