"""Mixed precision for ``--amp``: mmengine's AmpOptimWrapper on GPUs, a
bfloat16 variant on machines without one."""
import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmadapter.registry import OPTIM_WRAPPERS
from .cpu_autocast_ops import run_mmcv_ops_in_float32_under_cpu_autocast


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` for CPU training: bfloat16 autocast.

    mmengine's wrapper refuses to start without an accelerator (an assertion
    in its ``__init__``), although its ``autocast`` supports the CPU with
    bfloat16. bfloat16 has float32's exponent range, so losses need no
    scaling: the loss scaler is a disabled ``GradScaler``, which passes
    losses and gradients through unchanged and saves an empty state.
    mmcv's ops (nms, RoIAlign, ...) have float32 CPU kernels only: under this
    wrapper's autocast they compute in float32 and hand back the bfloat16
    their callers gave them (:mod:`mmadapter.engine.cpu_autocast_ops`).
    """

    def __init__(self, loss_scale='dynamic', dtype='bfloat16', **kwargs):
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(
                f'CPU autocast supports only bfloat16, got dtype={dtype!r}.')
        # AmpOptimWrapper.__init__ only asserts a GPU and builds a CUDA
        # scaler; the base initialisation is all that applies here.
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16
        run_mmcv_ops_in_float32_under_cpu_autocast()


def enable_amp(cfg: Config) -> None:
    """What ``--amp`` does (as in mmdet's tools/train.py): mmengine's
    AmpOptimWrapper with a dynamic loss scale."""
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    fit_amp_to_device(cfg)


def fit_amp_to_device(cfg: Config) -> None:
    """Without CUDA, run an AmpOptimWrapper config (from ``--amp`` or the
    config itself) with bfloat16 autocast on the CPU instead of failing."""
    if torch.cuda.is_available() or \
            cfg.optim_wrapper.get('type') != 'AmpOptimWrapper':
        return
    print_log('Mixed precision without CUDA: training with bfloat16 autocast '
              'on the CPU (mmadapter.CPUAmpOptimWrapper).', logger='current')
    cfg.optim_wrapper.type = 'mmadapter.CPUAmpOptimWrapper'
    cfg.optim_wrapper.pop('dtype', None)
