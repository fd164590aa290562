"""How an adapter module runs the path ``impl`` picks, beside its readable
forward (as timm's ``fused_attn`` sits beside its readable attention).

An adapter's ``forward`` starts with::

    fast = self.fast_path(x)
    if fast is not None:
        return fast(x, hw_shape)

and then reads as the method. :meth:`FastPaths.fast_path` returns the fused
function (``fused_forward``, from :mod:`mmadapter.ops`) or the compiled
readable forward (:mod:`.compiled`), each wrapped in gradient
checkpointing where the module asks to recompute; None runs the readable
forward under plain autograd.
"""
from functools import partial
from typing import Callable, Optional

import torch
import torch.utils.checkpoint as cp

from .compiled import compiled_forward
from .select import check_impl, resolve_impl


class FastPaths:
    """Mixed into an adapter module: ``impl`` and the choice of path.

    Attributes:
        impl: 'auto' (default), 'plain', 'fused' or 'compiled'.
        fused_forward: ``fn(module, *forward_args)`` computing what the
            readable forward computes (a class attribute; None where the
            method has no fused path).
        recompute: keep only the input for backward and recompute the
            module there (gradient checkpointing), whichever the path.
    """

    fused_forward: Optional[Callable] = None
    impl: str = 'auto'
    recompute: bool = False
    #: True while the readable forward runs on behalf of a wrapper (the
    #: checkpointed plain path), so that it does not pick a path again.
    _readable_only: bool = False

    def set_impl(self, impl: str) -> None:
        self.impl = check_impl(impl, type(self).__name__)

    def path(self, x: torch.Tensor) -> str:
        """'plain', 'fused' or 'compiled': what runs for input ``x``."""
        path = resolve_impl(self.impl, x.device.type)
        if path == 'fused' and not self.has_fused_path():
            return 'plain'
        return path

    def has_fused_path(self) -> bool:
        """Whether ``fused_forward`` covers this module as configured."""
        return self.fused_forward is not None

    def fast_path(self, x: torch.Tensor) -> Optional[Callable]:
        """What runs instead of the readable forward, or None for it."""
        if self._readable_only or torch.compiler.is_compiling():
            return None
        path = self.path(x)
        fn = None
        if path == 'fused':
            fn = partial(type(self).fused_forward, self)
        elif path == 'compiled':
            fn = partial(compiled_forward, self)
        if self.recompute and self.training and torch.is_grad_enabled():
            return partial(cp.checkpoint, fn or self._readable_forward,
                           use_reentrant=False)
        return fn

    def _readable_forward(self, *args):
        self._readable_only = True
        try:
            return self.forward(*args)
        finally:
            self._readable_only = False
