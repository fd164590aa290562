"""Learning-rate schedules as mmcv 1.x ran them (the official Mona runs).

mmcv 1.x's ``LrUpdaterHook`` computed the regular schedule from iteration 0
and, during the linear warm-up, multiplied it by the warm-up factor
(:func:`mmcv_warmup_factor`)::

    lr(t) = schedule(t) * (1 - (1 - t / W) * (1 - ratio))    for t < W

mmengine's stock ``LinearLR`` followed by the schedule with ``begin=W``
starts the schedule only after the warm-up instead, which is another curve:

* ADE20K's poly (:class:`PolyLRWithWarmup`): the stock pair differs by up to
  0.94% of the base learning rate (T = 160k, W = 1500);
* classification's cosine (:class:`WarmupCosineAnnealingLR`): with a
  20-of-100-epoch warm-up mmcv 1.x is at 0.905 of the base lr when the
  warm-up ends, the stock pair at 1.0.
"""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import (
    INF,
    CosineAnnealingParamScheduler,
    _ParamScheduler,
)

from mmadapter.registry import PARAM_SCHEDULERS


def mmcv_warmup_factor(step: int, warmup_iters: float,
                       warmup_ratio: float) -> float:
    """mmcv 1.x's linear warm-up factor at ``step`` (1 after the warm-up)."""
    if step >= warmup_iters:
        return 1.0
    return 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)


def mmcv_poly_with_warmup(base: float, step: int, total: int, power: float,
                          eta_min: float, warmup_iters: int,
                          warmup_ratio: float) -> float:
    """The value at ``step`` (the closed form above)."""
    value = (base - eta_min) * (1 - step / total)**power + eta_min
    return value * mmcv_warmup_factor(step, warmup_iters, warmup_ratio)


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


@PARAM_SCHEDULERS.register_module()
class WarmupCosineAnnealingLR(LRSchedulerMixin,
                              CosineAnnealingParamScheduler):
    """mmcv 1.x's ``lr_config = dict(policy='CosineAnnealing',
    min_lr_ratio=r, warmup='linear', warmup_ratio=w, warmup_iters=W)``.

    At step ``t`` (counted from ``begin``) the learning rate of a parameter
    group with base value ``b`` is::

        cosine(t) = b * r + (b - b * r) * (1 + cos(pi * t / T_max)) / 2
        factor(t) = 1 - (1 - t / W) * (1 - w)  for t < W, else 1
        lr(t)     = cosine(t) * factor(t)

    It sets the value itself (closed form), so it must be the only learning
    rate scheduler of the run.

    Args:
        warmup_end (int | float): W, the length of the warm-up in steps
            (epochs with ``by_epoch=True``; ``convert_to_iter_based=True``
            converts it with ``T_max``, ``begin`` and ``end``).
        warmup_ratio (float): w, the factor at step 0. Default 1e-3.
        eta_min_ratio (float): r. Default 1e-2 (``eta_min`` is also taken).
        T_max: default ``end - begin``; the other arguments are those of
            ``CosineAnnealingLR``.
    """

    def __init__(self, optimizer, warmup_end, warmup_ratio: float = 1e-3,
                 eta_min=None, eta_min_ratio=None, **kwargs):
        if eta_min is None and eta_min_ratio is None:
            eta_min_ratio = 1e-2
        if warmup_end < 0 or not 0 < warmup_ratio <= 1:
            raise ValueError(
                f'{type(self).__name__}: warmup_end must be >= 0 and '
                f'warmup_ratio in (0, 1], got {warmup_end} and '
                f'{warmup_ratio}.')
        self.warmup_end = warmup_end
        self.warmup_ratio = warmup_ratio
        super().__init__(optimizer, eta_min=eta_min,
                         eta_min_ratio=eta_min_ratio, **kwargs)

    @classmethod
    def build_iter_from_epoch(cls, *args, warmup_end, epoch_length=None,
                              **kwargs):
        return super().build_iter_from_epoch(
            *args, warmup_end=warmup_end * epoch_length,
            epoch_length=epoch_length, **kwargs)

    def _get_value(self):
        step = self.last_step
        cosine = (1 + math.cos(math.pi * step / self.T_max)) / 2
        factor = mmcv_warmup_factor(step, self.warmup_end, self.warmup_ratio)
        values = []
        for base in self.base_values:
            eta_min = self.eta_min if self.eta_min_ratio is None \
                else base * self.eta_min_ratio
            values.append((eta_min + (base - eta_min) * cosine) * factor)
        return values

