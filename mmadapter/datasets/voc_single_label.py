"""Pascal VOC as a single-label classification set, as the Mona paper's
classification table ran it."""
import xml.etree.ElementTree as ET

from mmpretrain.datasets import VOC
from mmpretrain.datasets.base_dataset import BaseDataset

from mmadapter.registry import DATASETS


@DATASETS.register_module()
class VOCSingleLabel(VOC):
    """mmpretrain's :class:`~mmpretrain.datasets.VOC` with one label per
    image: the class of the first ``<object>`` in the image's annotation
    file, in file order, difficult or not.

    The official Mona classification run trained VOC2007 this way (softmax
    cross-entropy, top-1 accuracy) from label lists whose generating script
    is not published; "the first listed label" is read here as the first
    object of the VOC annotation. For the standard multi-label protocol use
    mmpretrain's ``VOC`` with a multi-label head and ``VOCAveragePrecision``.

    Takes the arguments of ``VOC`` (``data_root``, ``split``, ...); the
    annotations are required for every split. Samples carry ``gt_label`` as
    an int (no ``gt_label_difficult``).
    """

    def _get_labels_from_xml(self, img_id):
        xml_path = self.backend.join_path(self.ann_prefix, f'{img_id}.xml')
        root = ET.fromstring(self.backend.get(xml_path))
        for obj in root.findall('object'):
            name = obj.find('name').text
            if name in self.class_to_idx:
                return [self.class_to_idx[name]], []
        raise ValueError(
            f'{xml_path} has no object of a known class '
            f'({", ".join(self.CLASSES)}): a single-label VOC sample needs '
            'one.')

    def load_data_list(self):
        if self.ann_prefix is None:
            raise ValueError(
                'VOCSingleLabel needs the annotations of every split: set '
                "data_prefix=dict(img_path='JPEGImages', "
                "ann_path='Annotations').")
        data_list = super().load_data_list()
        for info in data_list:
            info['gt_label'] = info['gt_label'][0]
            del info['gt_label_difficult']
        return data_list

    get_cat_ids = BaseDataset.get_cat_ids
