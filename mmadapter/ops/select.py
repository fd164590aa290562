"""Which path an adapter runs: ``impl='auto'|'plain'|'fused'|'compiled'``.

* ``plain``: the module's readable forward under autograd, the reference
  every other path is tested equal to;
* ``fused``: a hand-written autograd function of :mod:`mmadapter.ops`
  (same values, gradients and dropout masks; keeps less for backward);
* ``compiled``: the readable forward under ``torch.compile``
  (:mod:`.compiled`), aimed at GPUs, where a block's many small kernels are
  launched one at a time;
* ``auto``: per device type, the path a recorded measurement on that device
  shows best (:data:`AUTO`); ``plain`` on a device type nothing was measured
  on, since code that never ran on a device is not its default there.

The path is chosen at every forward from the input's device type, so one
model moved between devices takes each device's own path.
"""
from typing import Dict, Tuple

IMPLS: Tuple[str, ...] = ('auto', 'plain', 'fused', 'compiled')

#: The one table ``auto`` follows: device type -> (path, the measurement it
#: rests on, a file of benchmarks/). Change an entry only with the file that
#: measured the new choice on that device type.
AUTO: Dict[str, Tuple[str, str]] = {
    # a training step per method at Swin-B 512 with the fused functions;
    # the plain structure against them: issue 33 (docs/fast_paths.md)
    'cpu': ('fused', 'RESULTS_cpu_512.md'),
}
#: Where :data:`AUTO` has no entry (CUDA included, until a lease measures it).
UNMEASURED = 'plain'


def check_impl(impl: str, owner: str = 'adapter') -> str:
    """``impl`` if it is one of :data:`IMPLS`; else a ValueError naming the
    choices."""
    if impl not in IMPLS:
        raise ValueError(
            f'{owner}: impl must be one of {list(IMPLS)}, got {impl!r}. '
            "'auto' picks per device what a recorded measurement shows best "
            '(see docs/fast_paths.md).')
    return impl


def resolve_impl(impl: str, device_type: str) -> str:
    """The path (``plain``, ``fused`` or ``compiled``) ``impl`` means for
    inputs on ``device_type``."""
    if impl == 'auto':
        return AUTO.get(device_type, (UNMEASURED, ''))[0]
    return impl
