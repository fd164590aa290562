"""Learning-rate schedules as mmcv 1.x ran them (the official Mona runs).

mmcv 1.x's ``LrUpdaterHook`` computes the regular schedule from iteration 0
and, during warm-up, multiplies it by the warm-up factor. mmengine's stock
``LinearLR`` followed by ``CosineAnnealingLR(begin=warmup)`` starts the
cosine only after the warm-up instead, which is another curve: with a
20-of-100-epoch warm-up mmcv 1.x is at 0.905 of the base lr when the warm-up
ends, the stock pair at 1.0.
"""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import \
    CosineAnnealingParamScheduler

from mmadapter.registry import PARAM_SCHEDULERS


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

    def warmup_factor(self, step: int) -> float:
        if step >= self.warmup_end:
            return 1.0
        return 1.0 - (1.0 - step / self.warmup_end) * (1.0 - self.warmup_ratio)

    def _get_value(self):
        step = self.last_step
        cosine = (1 + math.cos(math.pi * step / self.T_max)) / 2
        factor = self.warmup_factor(step)
        values = []
        for base in self.base_values:
            eta_min = self.eta_min if self.eta_min_ratio is None \
                else base * self.eta_min_ratio
            values.append((eta_min + (base - eta_min) * cosine) * factor)
        return values

