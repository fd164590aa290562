"""Mixed precision for ``--amp``: mmengine's AmpOptimWrapper on GPUs, a
bfloat16 variant on machines without one."""
import logging
from typing import Optional

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
    slow = slow_bfloat16_note()
    if slow:
        print_log(slow, logger='current', level=logging.WARNING)
    cfg.optim_wrapper.type = 'mmadapter.CPUAmpOptimWrapper'
    cfg.optim_wrapper.pop('dtype', None)


def is_amp(optim_wrapper: dict) -> bool:
    """Does this ``optim_wrapper`` config train under autocast?"""
    return 'AmpOptimWrapper' in str(optim_wrapper.get('type', ''))


#: AmpOptimWrapper's own arguments, which OptimWrapper does not take
AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def float32_optim_wrapper(optim_wrapper: dict) -> dict:
    """The plain ``OptimWrapper`` config of an AMP one: the same optimizer,
    paramwise_cfg, clipping and accumulation, without autocast."""
    plain = {k: v for k, v in optim_wrapper.items() if k not in AMP_ONLY_KEYS}
    plain['type'] = 'OptimWrapper'
    return plain


def cpu_has_bfloat16_kernels() -> bool:
    """Does PyTorch have fast bfloat16 kernels on this CPU (oneDNN's, which
    need AVX-512 or AMX)? Without them bfloat16 matmuls and convolutions run
    on reference kernels: on a 2-core AMD EPYC (AVX2) a 37500x192 by
    192x768 matmul took 7.4 s in bfloat16 against 0.16 s in float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the query
        return True


def slow_bfloat16_note() -> Optional[str]:
    """What to tell a user about to autocast to bfloat16 on this CPU, or
    None where that is fast."""
    if cpu_has_bfloat16_kernels():
        return None
    return (
        'This CPU has no fast bfloat16 kernels (oneDNN needs AVX-512 or AMX; '
        f'PyTorch finds {torch.backends.cpu.get_cpu_capability()}): under '
        'bfloat16 autocast its matmuls and convolutions run on reference '
        'kernels, up to ~50x slower than in float32. To check a config on '
        'this machine, train in float32 (without --amp, or with the '
        'config\'s optim_wrapper of type OptimWrapper); '
        'tools/analysis/dry_run.py does so by default.')
