"""Reading checkpoint files without running code from them.

Every checkpoint this toolbox reads goes through ``torch.load`` with
``weights_only=True``: torch's restricted unpickler builds tensors and plain
containers only, so a file cannot make the process call anything. Files
that mmengine, mmdet, mmseg and mmpretrain write hold a few more types
(the message hub's history buffers, numpy arrays and scalars in them and in
the saved random states). :data:`ALLOWED_TYPES` names exactly those, found
by loading the files the real tools write (tests/test_checkpoint_safety.py
keeps the list honest): each is data, and none runs anything on load. The
one function among them, ``getattr`` (how a history buffer names its
statistics methods), is replaced by :func:`history_statistic`, which
allows exactly that use.

The list is applied only while a load runs (:func:`checkpoint_safety`, a
context around the toolbox's own reads and around tools/train.py's and
tools/test.py's ``runner.train()`` / ``runner.test()``, where mmengine loads
``--resume``, ``load_from`` and ``init_cfg`` files): importing mmadapter
changes nothing in torch's settings.

A file needing another type is refused with :class:`UnsafeCheckpointError`,
which names the type. A user who trusts the file may extend the list by name
(``--trust-checkpoint-type module.Name``, the config key
``trust_checkpoint_types``, or ``trusted=`` in Python); the load stays
weights-only, so only that type is added, never arbitrary code.
"""
import importlib
import os.path as osp
import pickle
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.serialization import (
    add_safe_globals,
    clear_safe_globals,
    get_safe_globals,
    get_unsafe_globals_in_checkpoint,
)

#: Config key and command-line option that extend the allow-list.
TRUST_KEY = 'trust_checkpoint_types'
TRUST_OPTION = '--trust-checkpoint-type'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint that holds types outside the allow-list."""


def _numpy_reconstructors() -> List[Tuple[object, str]]:
    """numpy's array and scalar reconstructors under both the numpy 1.x
    (``numpy.core``) and 2.x (``numpy._core``) module names: a file keeps
    the name of the numpy that wrote it, whichever numpy reads it."""
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    return [(fn, f'{module}.multiarray.{fn.__name__}')
            for fn in (reconstruct, scalar)
            for module in ('numpy.core', 'numpy._core')]


def _numpy_arrays() -> List[Tuple[object, str]]:
    """What a pickled array or scalar names besides its reconstructor:
    ``numpy.ndarray``, ``numpy.dtype``, and the class numpy >= 1.25 builds
    a numeric dtype as (``numpy.dtypes.UInt32DType`` for the random state
    RandomStateHook saves, ``Float64DType`` / ``Int64DType`` for history
    buffers), which the file does not name but the unpickler builds."""
    out = [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for name in ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8',
                 'uint16', 'uint32', 'uint64', 'float16', 'float32',
                 'float64'):
        cls = type(np.dtype(name))
        if cls is not np.dtype:  # numpy < 1.25 has no dtype classes
            out.append((cls, f'numpy.dtypes.{cls.__name__}'))
    return out


_STATISTICS = ('min', 'max', 'current', 'mean')


def history_statistic(owner, name: str):
    """What ``getattr`` may do in a checkpoint, and nothing more: a
    ``HistoryBuffer`` pickles its statistics methods by reference, as
    ``getattr(HistoryBuffer, 'mean')``. Any other use is refused (a free
    ``getattr`` would reach far beyond data)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if owner is HistoryBuffer and isinstance(name, str) and (
            name in _STATISTICS or name in HistoryBuffer._statistics_methods
    ) and callable(HistoryBuffer.__dict__.get(name)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(owner, "__name__", type(owner).__name__)}, '
        f'{name!r}): a checkpoint may only name the statistics methods of '
        "mmengine's HistoryBuffer this way")


def _history_buffer() -> List[Tuple[object, str]]:
    from mmengine.logging.history_buffer import HistoryBuffer
    return [(HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
            (history_statistic, 'builtins.getattr')]


def allowed_types() -> List[Tuple[object, str]]:
    """The allow-list: (object, name in the pickle) pairs."""
    return _history_buffer() + _numpy_reconstructors() + _numpy_arrays()


#: The names of :func:`allowed_types`, for messages and docs.
ALLOWED_TYPES = tuple(sorted({name for _, name in allowed_types()}))


def resolve_type(name: str) -> Tuple[object, str]:
    """The object a ``module.Name`` (or ``module.Outer.Name``) string
    names, as a (object, name) pair for the allow-list."""
    module_name, _, attr = name.rpartition('.')
    while module_name:
        try:
            obj = importlib.import_module(module_name)
            break
        except ImportError:
            module_name, _, outer = module_name.rpartition('.')
            attr = f'{outer}.{attr}'
    else:
        raise ValueError(
            f'{TRUST_OPTION} {name!r}: give a type as module.Name '
            "(e.g. 'mymodule.MyConfig'); no module of it can be imported.")
    try:
        for part in attr.split('.'):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(f'{TRUST_OPTION} {name!r}: {module_name} has no '
                         f'{attr}.') from None
    return obj, name


@contextmanager
def checkpoint_safety(trusted: Iterable[str] = ()) -> Iterator[None]:
    """While active, weights-only loads (also mmengine's, whose
    ``torch.load`` calls take torch's ``weights_only=True`` default)
    accept the allow-list plus the ``trusted`` type names. Nests, and
    restores torch's previous settings on exit: torch's own
    ``safe_globals`` context removes its types on exit even where an
    enclosing one still needs them (a pretrained load inside
    ``runner.train()``), so the set is saved and put back instead."""
    before = get_safe_globals()
    add_safe_globals(allowed_types() + [resolve_type(n) for n in trusted])
    try:
        yield
    finally:
        clear_safe_globals()
        add_safe_globals(before)


def add_trust_option(parser) -> None:
    """The command-line opt-in (argparse): ``args.trust_checkpoint_types``
    is the list of names given."""
    parser.add_argument(
        TRUST_OPTION, action='append', default=[], metavar='MODULE.NAME',
        dest='trust_checkpoint_types',
        help='allow one more type in the checkpoints loaded (the load stays '
        'weights-only); only for a file you trust whose refusal named this '
        f'type. Repeatable; adds to the config key {TRUST_KEY}')


@contextmanager
def script_loads(trusted: Iterable[str] = ()) -> Iterator[None]:
    """:func:`checkpoint_safety` for a command-line script: a refused file
    ends the process with the refusal, not a traceback."""
    try:
        with checkpoint_safety(trusted):
            yield
    except UnsafeCheckpointError as error:
        raise SystemExit(f'{type(error).__name__}: {error}') from None


def _refused_types(source) -> List[str]:
    try:
        return get_unsafe_globals_in_checkpoint(source)
    except Exception:  # a legacy (non-zip) file: the message names less
        return []


def _reason(error: Exception) -> str:
    """torch's own words on what it refused, without its advice (which
    is to turn weights-only loading off)."""
    text = str(error)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
        text = text.split('Check the documentation', 1)[0]
    text = ' '.join(text.split())
    return text or type(error).__name__


def refusal(path: str, error: Exception, types: Sequence[str]) -> str:
    names = ', '.join(types) if types else _reason(error)
    first = types[0] if types else 'module.Name'
    return (
        f'Refused to load {path}: it holds {names}, which is outside the '
        'types checkpoints of mmengine, mmdet, mmseg, mmpretrain and '
        'mmadapter hold. Unpickling such a type can run code, so nothing '
        'was loaded. If you trust this file and know the type to be plain '
        f'data, allow it by name: {TRUST_OPTION} {first} (tools/*.py), '
        f"{TRUST_KEY} = ['{first}'] (config), or trusted=['{first}'] "
        '(Python). The load stays weights-only.')


def load_file(path: str, map_location='cpu', trusted: Iterable[str] = (),
              mmap: Optional[bool] = None):
    """``torch.load`` of a local file, weights-only with the allow-list
    (and ``trusted``); :class:`UnsafeCheckpointError` names what it
    refuses."""
    path = osp.expanduser(path)
    kwargs = dict(mmap=mmap) if mmap is not None else {}
    trusted = tuple(trusted)
    with checkpoint_safety(trusted):
        try:
            return torch.load(path, map_location=map_location,
                              weights_only=True, **kwargs)
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpointError(
                refusal(path, error, _refused_types(path))) from None


def load_checkpoint(filename: str, map_location='cpu',
                    trusted: Iterable[str] = ()):
    """A checkpoint from a local path (:func:`load_file`) or any location
    mmengine's ``CheckpointLoader`` reads (URLs, ``open-mmlab://``...),
    weights-only in both cases."""
    if '://' not in filename:
        if not osp.isfile(osp.expanduser(filename)):
            raise FileNotFoundError(f'{filename} can not be found.')
        return load_file(filename, map_location, trusted)
    from mmengine.runner.checkpoint import CheckpointLoader
    with checkpoint_safety(tuple(trusted)):
        try:
            # mmengine's remote loaders call torch.load without
            # weights_only, i.e. with torch's weights-only default
            return CheckpointLoader.load_checkpoint(
                filename, map_location=map_location)
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpointError(refusal(filename, error, [])) \
                from None
