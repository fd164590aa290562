"""The toy datasets of tools/misc/make_toy_data.py are read by the stock
mmdet / mmseg dataset classes, with the objects the generator drew."""
import colorsys
import filecmp
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from e2e_utils import toy_data

SIZE = (160, 128)  # width, height: non-square on purpose


def hue_of(pixels: np.ndarray) -> float:
    """Hue (degrees) of the median colour of RGB ``pixels``."""
    r, g, b = np.median(pixels, axis=0) / 255
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def hue_distance(a: float, b: float) -> float:
    return min(abs(a - b), 360 - abs(a - b))


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy')
    return toy_data().make_voc(str(out), num_train=6, num_val=4,
                               img_size=SIZE, seed=1)


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy')
    return toy_data().make_coco(str(out), num_train=6, num_val=4,
                                img_size=SIZE, seed=1)


@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy')
    return toy_data().make_ade20k(str(out), num_train=6, num_val=4,
                                  img_size=SIZE, seed=1)


@pytest.mark.parametrize('year,split', [('VOC2007', 'trainval'),
                                        ('VOC2007', 'test'),
                                        ('VOC2012', 'trainval')])
def test_voc_read_by_stock_dataset(voc, year, split):
    from mmdet.datasets import VOCDataset
    dataset = VOCDataset(
        data_root=voc['root'], ann_file=f'{year}/ImageSets/Main/{split}.txt',
        data_prefix=dict(sub_data_root=f'{year}/'),
        # the training filters of the stock VOC config (test mode has none)
        filter_cfg=None if split == 'test' else dict(
            filter_empty_gt=True, min_size=32, bbox_min_size=32),
        test_mode=split == 'test', pipeline=[])
    expected = voc[year][split]
    assert len(dataset) == expected['images']
    assert dataset.metainfo['dataset_type'] == year
    instances = [i for k in range(len(dataset))
                 for i in dataset.get_data_info(k)['instances']]
    assert len(instances) == expected['instances']
    toy_hues = toy_data().FORM_HUES
    for k in range(len(dataset)):
        info = dataset.get_data_info(k)
        image = np.asarray(Image.open(info['img_path']).convert('RGB'))
        assert info['img_path'].endswith('.jpg')
        assert (info['width'], info['height']) == SIZE
        assert image.shape == (SIZE[1], SIZE[0], 3)
        for inst in info['instances']:
            x0, y0, x1, y1 = inst['bbox']
            assert inst['ignore_flag'] == 0  # not dropped as small/difficult
            assert 0 <= x0 < x1 <= SIZE[0] and 0 <= y0 < y1 <= SIZE[1]
            assert min(x1 - x0, y1 - y0) >= 32
            # the four toy classes are VOC's first four
            assert inst['bbox_label'] in range(4)
            form = toy_data().ADE_CLASSES[inst['bbox_label']]
            cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
            # every form covers the centre of its box, in its own hue
            centre = image[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3)
            if form != 'triangle':  # a triangle may miss its box centre
                assert hue_distance(hue_of(centre), toy_hues[form]) < 30


@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_read_by_stock_dataset(coco, split):
    from mmdet.datasets import CocoDataset
    from pycocotools import mask as mask_utils
    dataset = CocoDataset(
        data_root=coco['root'],
        ann_file=f'annotations/instances_{split}2017.json',
        data_prefix=dict(img=f'{split}2017/'),
        metainfo=dict(classes=('circle', 'square', 'triangle')),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        test_mode=split == 'val', pipeline=[])
    expected = coco[split]
    assert len(dataset) == expected['images']
    assert dataset.cat_ids == [1, 2, 3]
    count = 0
    for k in range(len(dataset)):
        info = dataset.get_data_info(k)
        assert osp.isfile(info['img_path'])
        assert Image.open(info['img_path']).size == SIZE
        for inst in info['instances']:
            count += 1
            x0, y0, x1, y1 = inst['bbox']
            assert inst['ignore_flag'] == 0
            assert inst['bbox_label'] in range(3)
            assert min(x1 - x0, y1 - y0) >= 32
            rle = mask_utils.frPyObjects(inst['mask'], SIZE[1], SIZE[0])
            mask = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
            ys, xs = np.nonzero(mask)
            # the polygon fills its box (up to rasterisation at sharp tips)
            assert abs(xs.min() - x0) <= 2 and abs(xs.max() + 1 - x1) <= 2
            assert abs(ys.min() - y0) <= 2 and abs(ys.max() + 1 - y1) <= 2
    assert count == expected['instances']


@pytest.mark.parametrize('split', ['training', 'validation'])
def test_ade20k_read_by_stock_dataset(ade, split):
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations
    dataset = ADE20KDataset(
        data_root=ade['root'],
        data_prefix=dict(img_path=f'images/{split}',
                         seg_map_path=f'annotations/{split}'),
        pipeline=[])
    assert len(dataset) == ade[split]['images']
    labelled = 0
    load = LoadAnnotations()  # reduce_zero_label from the dataset
    for k in range(len(dataset)):
        info = dataset.get_data_info(k)
        stem = osp.splitext(osp.basename(info['img_path']))[0]
        prefix = 'ADE_train_' if split == 'training' else 'ADE_val_'
        assert stem.startswith(prefix) and \
            osp.basename(info['seg_map_path']) == stem + '.png'
        raw = np.asarray(Image.open(info['seg_map_path']))
        assert raw.ndim == 2 and raw.dtype == np.uint8
        assert set(np.unique(raw)) <= {0, 1, 2, 3, 4} and raw.max() > 0
        labelled += int((raw > 0).sum())
        # the stock loading maps 0 to ignore (255) and forms to 0..3
        assert info['reduce_zero_label']
        seg = load(dict(info, seg_fields=[]))['gt_seg_map']
        assert set(np.unique(seg)) <= {0, 1, 2, 3, 255}
        assert ((seg == 255) == (raw == 0)).all()
        # each labelled region is drawn in its form's hue
        image = np.asarray(Image.open(info['img_path']).convert('RGB'))
        for label in np.unique(raw[raw > 0]):
            form = toy_data().ADE_CLASSES[label - 1]
            assert hue_distance(hue_of(image[raw == label]),
                                toy_data().FORM_HUES[form]) < 30
    assert labelled == ade[split]['labelled_pixels']


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    make = toy_data().make_coco
    for name, seed in (('a', 3), ('b', 3), ('c', 4)):
        make(str(tmp_path / name), num_train=2, num_val=1, img_size=96,
             seed=seed)
    ann = 'coco/annotations/instances_train2017.json'
    img = 'coco/train2017/000000000001.jpg'
    for rel in (ann, img):
        assert filecmp.cmp(tmp_path / 'a' / rel, tmp_path / 'b' / rel,
                           shallow=False)
        assert not filecmp.cmp(tmp_path / 'a' / rel, tmp_path / 'c' / rel,
                               shallow=False)


def test_cli_writes_the_configured_layout(tmp_path):
    toy_data().main(['--out-dir', str(tmp_path), '--num-train', '4',
                     '--num-val', '2', '--img-size', '192x128'])
    for rel in ('VOCdevkit/VOC2007/ImageSets/Main/trainval.txt',
                'VOCdevkit/VOC2007/ImageSets/Main/test.txt',
                'VOCdevkit/VOC2012/ImageSets/Main/trainval.txt',
                'VOCdevkit/VOC2007/JPEGImages/000001.jpg',
                'VOCdevkit/VOC2012/Annotations/2012_000001.xml',
                'coco/annotations/instances_val2017.json',
                'coco/val2017/000000000001.jpg',
                'ade/ADEChallengeData2016/images/training/'
                'ADE_train_00000001.jpg',
                'ade/ADEChallengeData2016/annotations/validation/'
                'ADE_val_00000001.png',
                'flowers102/jpg/image_00006.jpg',
                'flowers102/imagelabels.mat', 'flowers102/setid.mat',
                'oxford_pets/annotations/trainval.txt',
                'oxford_pets/annotations/test.txt',
                'oxford_pets/images/Abyssinian_1.jpg'):
        assert (tmp_path / rel).is_file(), rel
    assert not (tmp_path / 'VOCdevkit/VOC2012/ImageSets/Main/test.txt') \
        .exists()
    image = Image.open(tmp_path / 'coco/val2017/000000000001.jpg')
    assert image.size == (192, 128)


def test_regenerating_replaces_old_files(tmp_path):
    make = toy_data().make_ade20k
    make(str(tmp_path), num_train=3, num_val=1, img_size=96)
    make(str(tmp_path), num_train=1, num_val=1, img_size=96)
    images = tmp_path / 'ade/ADEChallengeData2016/images/training'
    assert len(list(images.iterdir())) == 1


def test_refuses_to_overwrite_foreign_data(tmp_path):
    real = tmp_path / 'coco' / 'annotations'
    real.mkdir(parents=True)
    (real / 'instances_train2017.json').write_text('{}')
    with pytest.raises(FileExistsError, match='not written by'):
        toy_data().make_coco(str(tmp_path), num_train=1, num_val=1,
                             img_size=96)
    assert (real / 'instances_train2017.json').read_text() == '{}'


@pytest.mark.parametrize('size', ['12x', 'axb', '40', '1x2x3'])
def test_bad_image_size_is_a_clear_cli_error(size, capsys):
    with pytest.raises(SystemExit):
        toy_data().parse_args(['--img-size', size])
    assert '--img-size' in capsys.readouterr().err
