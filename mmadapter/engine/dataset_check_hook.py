"""The dataset checks (:mod:`mmadapter.datasets.checks`) for a run of
the stock tools (mmdet's, mmseg's, mmpretrain's tools/train.py and test.py):

    custom_hooks = [dict(type='mmadapter.DatasetCheckHook')]

The table configs' runtime base (configs/_base_/mmadapter_runtime.py) turns
it on. The checks start when the Runner builds the hook, because the
datasets are built inside ``runner.train()`` / ``runner.test()`` before the
first hook event, and end with the run (``after_run``).
"""
from mmengine.hooks import Hook

from mmadapter.datasets.checks import (
    disable_dataset_checks,
    enable_dataset_checks,
)
from mmadapter.registry import HOOKS


@HOOKS.register_module()
class DatasetCheckHook(Hook):
    """Checks every dataset of the run as it is built and read: empty after
    its filters, images missing on disk, unreadable images (see
    :mod:`mmadapter.datasets.checks`)."""

    priority = 'VERY_HIGH'

    def __init__(self):
        enable_dataset_checks()
        self._active = True

    def after_run(self, runner) -> None:
        if self._active:
            disable_dataset_checks()
            self._active = False

    def __del__(self):
        # a Runner that never reached after_run (failed build, interrupted)
        if getattr(self, '_active', False):
            disable_dataset_checks()
            self._active = False
