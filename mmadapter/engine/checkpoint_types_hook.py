"""The checkpoint allow-list (:mod:`mmadapter.safe_load`) for a
run of the stock tools, whose Runner loads ``--resume``, ``load_from`` and
tools/test.py's checkpoint with torch's weights-only default, which refuses
the message hub's history buffers of every mmengine checkpoint:

    custom_hooks = [dict(type='mmadapter.CheckpointTypesHook')]

The table configs' runtime base turns it on (tools/train.py and
tools/test.py apply the allow-list themselves). The loads stay weights-only;
the allow-list is active from ``before_run`` (the Runner loads checkpoints
after it) to ``after_run``, and the config key ``trust_checkpoint_types``
extends it by name.
"""
from contextlib import ExitStack

from mmengine.hooks import Hook

from mmadapter.registry import HOOKS
from mmadapter.safe_load import TRUST_KEY, checkpoint_safety


@HOOKS.register_module()
class CheckpointTypesHook(Hook):
    """Lets the run's checkpoint loads accept the types real mmengine,
    mmdet, mmseg, mmpretrain and mmadapter checkpoints hold, weights-only."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self._active = ExitStack()

    def before_run(self, runner) -> None:
        trusted = (runner.cfg.get(TRUST_KEY) if runner.cfg else None) or ()
        self._active.enter_context(checkpoint_safety(trusted))

    def after_run(self, runner) -> None:
        self._active.close()
