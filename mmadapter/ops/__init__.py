"""Fast paths beside the adapters' readable forwards, chosen by ``impl``.

Each path computes what its adapter's readable forward computes (values,
gradients and, where the path draws them, dropout masks under one seed):
``fused`` hand-written autograd functions (:mod:`.bottleneck`,
:mod:`.lora`, :mod:`.lorand`, :mod:`.mona`) and ``compiled``
(:mod:`.compiled`). :mod:`.select` holds the one table ``auto`` follows.
"""
from .dispatch import FastPaths
from .select import AUTO, IMPLS, check_impl, resolve_impl

__all__ = ['AUTO', 'IMPLS', 'FastPaths', 'check_impl', 'resolve_impl']
