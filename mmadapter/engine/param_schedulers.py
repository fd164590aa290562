"""mmcv 1.x's ``poly`` learning-rate policy with its linear warm-up, as the
official ADE20K runs (mmseg 0.x) scheduled the learning rate.

mmcv 1.x computed the poly value from iteration 0 and, during the warm-up,
multiplied it by the warm-up factor::

    lr(t) = (base - min_lr) * (1 - t / T) ** power + min_lr
    lr(t) *= 1 - (1 - t / W) * (1 - ratio)          for t < W

mmseg 1.x's stock ``LinearLR`` then ``PolyLR(begin=W)`` runs the poly decay
from W instead, which differs from this curve by up to about 1% of the base
learning rate (0.94% for T = 160k, W = 1500).
"""
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler

from mmadapter.registry import PARAM_SCHEDULERS


def mmcv_poly_with_warmup(base: float, step: int, total: int, power: float,
                          eta_min: float, warmup_iters: int,
                          warmup_ratio: float) -> float:
    """The value at ``step`` (the closed form above)."""
    value = (base - eta_min) * (1 - step / total)**power + eta_min
    if step < warmup_iters:
        value *= 1 - (1 - step / warmup_iters) * (1 - warmup_ratio)
    return value


@PARAM_SCHEDULERS.register_module()
class PolyParamWithWarmup(_ParamScheduler):
    """mmcv 1.x's poly schedule with linear warm-up, for any parameter.

    Args:
        optimizer: the wrapped optimizer (or optim wrapper).
        param_name: the optimizer parameter it sets ('lr' for the LR
            variant).
        power: poly power (1.0 in mmseg's configs).
        eta_min: the final value (``min_lr``; 0.0).
        warmup_iters: warm-up length W (1500); 0 for none.
        warmup_ratio: the warm-up's starting factor (1e-6).
        begin, end: the steps the schedule covers; T = end - begin.
        by_epoch: steps are epochs (False: iterations, as mmseg).
    """

    def __init__(self, optimizer, param_name: str, power: float = 1.0,
                 eta_min: float = 0.0, warmup_iters: int = 1500,
                 warmup_ratio: float = 1e-6, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = False,
                 verbose: bool = False):
        if end == INF:
            raise ValueError(f'{type(self).__name__} needs a finite end '
                             '(the total number of iterations).')
        if not 0 <= warmup_ratio <= 1 or warmup_iters < 0:
            raise ValueError(
                f'{type(self).__name__}: warmup_ratio must be in [0, 1] and '
                f'warmup_iters >= 0, got {warmup_ratio} and {warmup_iters}.')
        self.power = power
        self.eta_min = eta_min
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        super().__init__(optimizer, param_name=param_name, begin=begin,
                         end=end, last_step=last_step, by_epoch=by_epoch,
                         verbose=verbose)

    def _get_value(self):
        step, total = self.last_step - self.begin, self.end - self.begin
        return [
            mmcv_poly_with_warmup(base, step, total, self.power, self.eta_min,
                                  self.warmup_iters, self.warmup_ratio)
            for base in self.base_values
        ]


@PARAM_SCHEDULERS.register_module()
class PolyLRWithWarmup(LRSchedulerMixin, PolyParamWithWarmup):
    """mmcv 1.x's ``lr_config = dict(policy='poly', warmup='linear', ...)``
    on the learning rate (see :class:`PolyParamWithWarmup`)."""
