"""Training hooks of mmadapter."""
import math

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmadapter.analysis import parameter_report
from mmadapter.registry import HOOKS


@HOOKS.register_module()
class ParameterReportHook(Hook):
    """Logs the trainable-parameter table when training starts and stops
    the run before it begins when nothing would train."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        report = parameter_report(model)
        runner.logger.info('Parameter report:\n' + report.table())
        if report.model_trainable == 0:
            raise RuntimeError(
                'No parameter of the model trains: the tuning policy and the '
                'config freeze everything. Give the backbone an adapter, pick '
                "another tuning policy (e.g. tuning='adapter' or 'full'), or "
                'unfreeze the neck/head.')


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stops training at the first non-finite loss, naming the iteration.

    mmengine logs a NaN loss and carries on; a days-long run then trains on
    garbage. (AMP's loss scaler already skips overflowing fp16 steps; a loss
    that is itself NaN or inf is a real divergence.)
    """

    priority = 'HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not outputs:
            return
        bad = {
            name: float(value)
            for name, value in outputs.items() if 'loss' in name
            and isinstance(value, (torch.Tensor, float)) and
            not math.isfinite(float(value))
        }
        if bad:
            raise RuntimeError(
                f'Non-finite loss at iteration {runner.iter + 1} (epoch '
                f'{runner.epoch + 1}): {bad}. Training stopped instead of '
                'continuing on NaN weights. Lower the learning rate, check '
                'the data, or resume from the last checkpoint with --resume.')
