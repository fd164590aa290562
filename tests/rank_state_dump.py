"""A hook for tests/test_distributed.py: every rank saves its trainable
parameters when training starts and ends, so the test can compare ranks
with each other and with the checkpoint rank 0 wrote."""
import os
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankStateDumpHook(Hook):

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def _dump(self, runner, stage: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        state = {name: param.detach().clone()
                 for name, param in model.named_parameters()
                 if param.requires_grad}
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save(dict(world_size=runner.world_size,
                        wrapper=type(runner.model).__name__, state=state),
                   osp.join(self.out_dir, f'{stage}_rank{runner.rank}.pth'))

    def before_train(self, runner) -> None:
        self._dump(runner, 'before')

    def after_train(self, runner) -> None:
        self._dump(runner, 'after')
