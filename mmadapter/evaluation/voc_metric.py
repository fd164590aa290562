"""Pascal VOC mAP as the official Mona runs computed it (mmdet 2.11).

mmdet 3.3's ``VOCMetric`` always measures boxes in the legacy coordinate
system (width ``x2 - x1 + 1``), following the VOC devkit; mmdet 2.11, which
produced the paper's VOC numbers, computed the IoUs with ``x2 - x1``. The
difference moves detections across the 0.5 IoU threshold, mostly small ones.
"""
from contextlib import contextmanager

from mmdet.evaluation.metrics import VOCMetric as MMDetVOCMetric
from mmdet.evaluation.metrics import voc_metric as mmdet_voc_metric

from mmadapter.registry import METRICS


@contextmanager
def _without_legacy_coordinate():
    """Run mmdet's metric code with ``use_legacy_coordinate=False`` passed
    to its ``eval_map`` / ``eval_recalls`` (it hard-codes True)."""
    originals = {name: getattr(mmdet_voc_metric, name)
                 for name in ('eval_map', 'eval_recalls')}

    def forced(function):
        def call(*args, **kwargs):
            return function(*args, **{**kwargs,
                                      'use_legacy_coordinate': False})
        return call

    try:
        for name, function in originals.items():
            setattr(mmdet_voc_metric, name, forced(function))
        yield
    finally:
        for name, function in originals.items():
            setattr(mmdet_voc_metric, name, function)


@METRICS.register_module()
class VOCMetric(MMDetVOCMetric):
    """mmdet's ``VOCMetric`` with a choice of box coordinates.

    Args:
        legacy_coordinate (bool): True: mmdet 3.3's computation (boxes
            ``x2 - x1 + 1`` wide, the VOC devkit's); False (default): the
            official Mona runs' (mmdet 2.11, ``x2 - x1``).
        **kwargs: the arguments of mmdet's ``VOCMetric`` (``eval_mode``
            '11points' for VOC07, ``iou_thrs``, ``metric``, ...).
    """

    def __init__(self, legacy_coordinate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.legacy_coordinate = legacy_coordinate

    def compute_metrics(self, results: list) -> dict:
        if self.legacy_coordinate:
            return super().compute_metrics(results)
        with _without_legacy_coordinate():
            return super().compute_metrics(results)
