"""mmcv's compiled ops under CPU autocast.

mmcv's CPU kernels (nms, RoIAlign, ...) take float32 (or float64) only. In
bfloat16 autocast on the CPU (``CPUAmpOptimWrapper``) a detector's RPN
hands them bfloat16 boxes and features, and they stop with
``expected scalar type Float but found BFloat16``; on CUDA the same kernels
accept fp16, so the configs run there unchanged. Here every autograd
Function of ``mmcv.ops`` computes in float32 while CPU autocast is on and
returns its floating outputs in the reduced dtype it was given, so callers
see what they see on CUDA (mmdet writes RoIAlign's output into a tensor of
the features' dtype). The casts are ordinary autograd ops, so gradients
flow back in the inputs' dtypes. Outside CPU autocast nothing changes.
"""
import sys

import torch

_PATCHED = '_mmadapter_float32_under_cpu_autocast'
_REDUCED = (torch.bfloat16, torch.float16)


def _cast(value, dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, (tuple, list)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _reduced_dtype(args):
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.dtype in _REDUCED:
            return arg.dtype
    return None


def float32_under_cpu_autocast(apply):
    """Wrap a Function's ``apply`` as described in the module docstring."""

    def wrapped(*args):
        if not torch.is_autocast_enabled('cpu'):
            return apply(*args)
        reduced = _reduced_dtype(args)
        with torch.autocast('cpu', enabled=False):
            out = apply(*_cast(args, torch.float32))
        return out if reduced is None else _cast(out, reduced)

    setattr(wrapped, _PATCHED, True)
    wrapped.__wrapped__ = apply
    return wrapped


def mmcv_ops_modules():
    """``mmcv.ops`` and the submodules it imports (all of its ops)."""
    import mmcv.ops  # noqa: F401
    return [m for n, m in list(sys.modules.items())
            if n == 'mmcv.ops' or n.startswith('mmcv.ops.')]


def run_mmcv_ops_in_float32_under_cpu_autocast() -> int:
    """Patch every autograd Function of ``mmcv.ops`` (once per process) and
    the module-level aliases of their ``apply`` (``roi_align =
    RoIAlignFunction.apply``); returns how many Functions were patched."""
    modules = mmcv_ops_modules()
    replaced = {}
    for module in modules:
        for obj in list(vars(module).values()):
            if (isinstance(obj, type)
                    and issubclass(obj, torch.autograd.Function)
                    and obj.__module__.startswith('mmcv.ops')
                    and obj not in replaced
                    and not getattr(obj.apply, _PATCHED, False)):
                original = obj.apply
                obj.apply = staticmethod(float32_under_cpu_autocast(original))
                replaced[obj] = original
    originals = {original: obj.apply for obj, original in replaced.items()}
    for module in [m for n, m in list(sys.modules.items())
                   if n.startswith(('mmcv.', 'mmdet.', 'mmseg.'))]:
        for name, value in list(vars(module).items()):
            try:
                target = originals.get(value)
            except TypeError:  # unhashable
                continue
            if target is not None:
                setattr(module, name, target)
    return len(replaced)
