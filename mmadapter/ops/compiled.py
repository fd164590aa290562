"""The compiled path: an adapter's readable forward under ``torch.compile``.

Its target is the GPU's cost of launching a block's many small kernels one
at a time; inductor fuses the elementwise ones. Compiled per adapter class
(region by region, not the whole model), with dynamic shapes so that
detection's varying image sizes, and the stages' varying grids, reuse one
graph instead of recompiling. The first call of a new graph compiles it;
that time is logged through mmengine's current logger.
"""
import time
from typing import Callable, Dict

import torch
from mmengine.logging import print_log

_COMPILED: Dict[type, Callable] = {}


def _graph_count() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters
    return counters['stats']['unique_graphs']


def compiled_forward(module: torch.nn.Module, *args):
    """``module.forward(*args)`` through the compiled readable forward of
    its class (the forward takes its readable branch while compiled: see
    :meth:`~.dispatch.FastPaths.fast_path`)."""
    cls = type(module)
    fn = _COMPILED.get(cls)
    if fn is None:
        fn = _COMPILED[cls] = torch.compile(cls.forward, dynamic=True)
    graphs, start = _graph_count(), time.perf_counter()
    # the forward takes its readable branch inside: while dynamo traces it,
    # and also where dynamo runs the frame eagerly instead (a graph it may
    # not compile again, past torch._dynamo.config's recompile limit), which
    # would otherwise come back here without end
    module._readable_only = True
    try:
        out = fn(module, *args)
    finally:
        module._readable_only = False
    new = _graph_count() - graphs
    if new:
        print_log(
            f'mmadapter: compiled {cls.__name__}.forward ({new} new '
            f'graph(s)) in {time.perf_counter() - start:.1f} s; its '
            'backward compiles on the first backward pass', logger='current')
    return out
