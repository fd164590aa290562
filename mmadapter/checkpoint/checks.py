"""Checks of the checkpoint files a run is given, made before the Runner is
built: a truncated or non-checkpoint file, a file holding types outside the
weights-only allow-list, an adapter-only checkpoint whose recorded base
(sha256) or adapter configuration is not the one the run would put it on,
and a checkpoint written for another model configuration
(:mod:`mmadapter.checkpoint.model_record`), each reported naming the
option, the file and the fix, instead of a ``PytorchStreamReader`` or
``UnpicklingError`` traceback (or a model silently built on another base,
or another run continued).
"""
import logging
import os.path as osp
import pickle
import zipfile
from typing import List, Optional

from mmengine.config import Config
from mmengine.logging import print_log

from mmadapter.backbones.base import architecture_of
from mmadapter.registry import MODELS
from mmadapter.safe_load import UnsafeCheckpointError, load_file
from .config_text import config_from_text
from .model_record import check_model_record
from .records import adapter_info, file_sha256, init_cfg_checkpoint, local_file

# besides the architecture, what decides the adapters' tensors
METHOD_KEYS = ('type', 'adapter', 'tuning')


OTHER_MODEL_FIX = (
    'Each config trains in its own work directory (work_dirs/<method '
    'folder>/<config name>): resume there, test with the config the '
    "checkpoint was trained with, or, to start from another model's "
    "weights, give them to the backbone's init_cfg (Pretrained) instead.")


class CheckpointFileError(ValueError):
    """A file given as a checkpoint that cannot be one, or not this run's."""


def _size(path: str) -> str:
    size = osp.getsize(path)
    return f'{size / 2**20:.1f} MiB' if size >= 2**20 else f'{size} bytes'


def checkpoint_file_problem(path: str) -> Optional[str]:
    """Why the local file ``path`` is not a readable PyTorch checkpoint
    (without reading its tensors); None when it looks complete."""
    size = osp.getsize(path)
    if size == 0:
        return 'the file is empty (0 bytes)'
    with open(path, 'rb') as f:
        head = f.read(64)
    if head[:4] == b'PK\x03\x04':  # torch's zip format (torch >= 1.6)
        try:
            with zipfile.ZipFile(path) as archive:
                archive.infolist()  # the central directory, at the end
        except (zipfile.BadZipFile, OSError):
            return (f'truncated ({_size(path)}; the end of the archive is '
                    'missing): an interrupted save, copy or download')
        return None
    if head[:1] == b'\x80':  # a pickle: torch's legacy format
        return None
    shown = head[:24].decode('latin-1').encode('unicode_escape').decode()
    return (f"not a PyTorch checkpoint (it starts with '{shown}'; "
            'a download error page, or another kind of file?)')


def check_checkpoint_file(path: str, option: str, fix: str = '') -> None:
    """Raise :class:`CheckpointFileError` naming ``option`` when the local
    file ``path`` is not a readable checkpoint (URLs are not checked)."""
    local = local_file(path) if '://' in path else osp.expanduser(path)
    if local is None or not osp.isfile(local):
        return
    problem = checkpoint_file_problem(local)
    if problem:
        raise CheckpointFileError(
            f'{option} {path}: {problem}. '
            + (fix or 'Give a complete checkpoint file.'))


def _meta_only(path: str) -> dict:
    """The checkpoint dict, its tensors memory-mapped where possible."""
    try:
        return load_file(path, mmap=True)
    except UnsafeCheckpointError:
        raise
    except (RuntimeError, pickle.UnpicklingError, ValueError):
        return load_file(path)  # legacy (non-zip) files cannot be mapped


def _arch(backbone_cfg) -> dict:
    """The backbone's type, adapter and tuning policy, then its
    architecture as :func:`~mmadapter.backbones.base.architecture_of`
    defines it (the class defaults filled in when the type is known)."""
    backbone_type = backbone_cfg.get('type')
    backbone_cls = MODELS.get(backbone_type) if isinstance(
        backbone_type, str) else backbone_type
    if not isinstance(backbone_cls, type):
        backbone_cls = object  # unknown type: the config's values only
    method = {k: backbone_cfg.get(k) for k in METHOD_KEYS}
    return {**method, **architecture_of(backbone_cls, backbone_cfg)}


def _backbone_cfg(cfg: Config):
    model = cfg.get('model') or {}
    return model.get('backbone') if isinstance(model, dict) else None


def adapter_checkpoint_problems(path: str, cfg: Config,
                                checkpoint: Optional[dict] = None
                                ) -> List[str]:
    """What does not fit between an adapter-only checkpoint (``path``, read
    unless given as ``checkpoint``) and the run of ``cfg`` it is given to:
    another base file (by sha256) for the backbone, another adapter method,
    tuning policy or backbone shape."""
    local = local_file(path)
    if local is None:
        return []
    info = adapter_info(checkpoint if checkpoint is not None
                        else _meta_only(local))
    backbone = _backbone_cfg(cfg)
    if info is None or backbone is None:
        return []
    problems = []
    record = (info.get('bases') or {}).get('backbone')
    configured = init_cfg_checkpoint(backbone.get('init_cfg'))
    if record and record.get('sha256') and configured and \
            record.get('source', 'init_cfg') == 'init_cfg':
        base = local_file(configured)
        if base is not None and file_sha256(base) != record['sha256']:
            problems.append(
                f'its adapters were trained on the base '
                f"{record['checkpoint']} (sha256 {record['sha256'][:12]}...), "
                f'but model.backbone.init_cfg.checkpoint is {configured} '
                f'(sha256 {file_sha256(base)[:12]}...): the frozen weights '
                'would come from another model. Point init_cfg.checkpoint at '
                'the original base file')
    if info.get('config'):
        trained = _backbone_cfg(config_from_text(info['config']))
        if trained is not None:
            before, now = _arch(trained), _arch(backbone)
            changed = [f'{k}: {before.get(k)!r} in the checkpoint, '
                       f'{now.get(k)!r} in the config'
                       for k in dict.fromkeys([*before, *now])
                       if before.get(k) != now.get(k)]
            if changed:
                problems.append(
                    'it was trained with another backbone configuration ('
                    + '; '.join(changed) + '). Use the config it records '
                    "(meta['adapter_checkpoint']['config']), or a checkpoint "
                    'trained with this one')
    return problems


def check_run_checkpoint(path: str, option: str, cfg: Config,
                         fix: str = '') -> None:
    """:func:`check_checkpoint_file`, then, for an adapter-only checkpoint,
    :func:`adapter_checkpoint_problems`, then that the checkpoint was
    written for this model configuration (:func:`check_model_record`;
    a note when it records none). All before anything is loaded."""
    check_checkpoint_file(path, option, fix)
    local = local_file(path)
    if local is None:
        return
    checkpoint = _meta_only(local)
    problems = adapter_checkpoint_problems(path, cfg, checkpoint)
    if problems:
        raise CheckpointFileError(
            f'{option} {path} is an adapter-only checkpoint that does not '
            'fit this run: ' + '; and '.join(problems) + '.')
    note = check_model_record(checkpoint, cfg.get('model'),
                              f'{option} {path}', OTHER_MODEL_FIX)
    if note:
        print_log(note, logger='current', level=logging.WARNING)
