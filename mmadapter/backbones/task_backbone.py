"""A task model's view of a backbone that several tasks share."""
from typing import Optional, Sequence

import torch.nn as nn

from mmadapter.registry import MODELS
from .base import AdapterBackboneMixin


@MODELS.register_module()
class TaskBackbone(nn.Module):
    """Stands in for a task model's backbone: runs the shared backbone with
    this task's adapter set and returns this task's outputs.

    Built from a config (``dict(type='mmadapter.TaskBackbone',
    adapter_set='voc', out_indices=(1, 2, 3))``) so that a stock detector or
    segmentor builds around it without a backbone of its own; the shared
    backbone is given with :meth:`attach`. The shared backbone computes the
    union of the tasks' ``out_indices``; every forward activates this
    task's set (a no-op when it is active already).
    """

    def __init__(self, adapter_set: str, out_indices: Sequence[int],
                 init_cfg=None):
        super().__init__()
        self.adapter_set = adapter_set
        self.out_indices = tuple(out_indices)
        self.shared: Optional[AdapterBackboneMixin] = None
        self._positions: Sequence[int] = ()

    def attach(self, shared: AdapterBackboneMixin) -> 'TaskBackbone':
        shared.adapter_set(self.adapter_set)  # raises for an unknown set
        produced = list(shared.out_indices)
        missing = [i for i in self.out_indices if i not in produced]
        if missing:
            raise ValueError(
                f'The shared backbone produces out_indices {produced}; task '
                f'{self.adapter_set!r} needs {list(self.out_indices)}. Build '
                'it with the union of the tasks\' out_indices.')
        self.shared = shared
        self._positions = [produced.index(i) for i in self.out_indices]
        return self

    def init_weights(self):
        """The shared backbone holds its own weights."""

    def forward(self, x):
        if self.shared is None:
            raise RuntimeError(
                f'TaskBackbone {self.adapter_set!r} has no shared backbone: '
                'call attach(backbone) first (mmadapter.apis.multitask '
                'does).')
        self.shared.activate_adapter_set(self.adapter_set)
        outs = self.shared(x)
        return tuple(outs[i] for i in self._positions)
