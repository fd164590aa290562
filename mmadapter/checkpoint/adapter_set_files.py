"""Adapter sets as files to share: safetensors for the tensors, a JSON file
beside them for what they are, as peft shares adapters.

``NAME.safetensors`` holds the state dict of an adapter-only checkpoint
(adapters, and for a task bundle its neck and head, plus the frozen backbone
tensors its base lacks); ``NAME.json`` records the method with its options,
the tuning policy, the backbone architecture, the base checkpoint (path and
sha256), the config that built the model (text, read as data:
:mod:`.config_text`), the dataset meta and the safetensors file's sha256.
Neither file can hold code: reading them unpickles nothing.

:func:`adapter_set_checkpoint` turns the pair back into the adapter-only
checkpoint dict every loader of this package takes (``load_adapter_set``,
``MultiTaskModel``, ``load_checkpoint_dict``).
"""
import json
import os
import os.path as osp
from typing import Optional, Tuple

from mmadapter.version import __version__
from .config_text import config_dict_from_text
from .records import (
    ADAPTER_META_KEY,
    FORMAT_VERSION,
    AdapterCheckpointError,
    adapter_info,
    file_sha256,
    read_checkpoint_file,
)

#: ``format`` of the JSON file.
SET_FORMAT = 'mmadapter-adapter-set'
SET_FORMAT_VERSION = 1
SUFFIXES = ('.safetensors', '.json')


def is_adapter_set_file(path: str) -> bool:
    return str(path).endswith(SUFFIXES)


def set_paths(path: str) -> Tuple[str, str]:
    """(tensors, description) of a pair given by either file or the path
    without its suffix."""
    stem = str(path)
    for suffix in SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[:-len(suffix)]
    return stem + '.safetensors', stem + '.json'


def _json_plain(value):
    if isinstance(value, dict):
        return {str(k): _json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, 'tolist'):  # numpy scalars and arrays
        return value.tolist()
    raise AdapterCheckpointError(
        f'{type(value).__name__} in the dataset meta cannot be written as '
        'JSON.')


def describe_set(info: dict, name: str) -> dict:
    """The JSON description of an adapter-only checkpoint record."""
    text = info.get('config')
    if not text:
        raise AdapterCheckpointError(
            'The adapter-only checkpoint records no config; an adapter set '
            'file needs it to rebuild the model.')
    model = config_dict_from_text(text).get('model') or {}
    bases = info.get('bases') or {}
    backbones = {}
    for prefix, base in bases.items():
        backbone = model
        for part in prefix.split('.') if prefix else ():
            backbone = backbone.get(part) or {}
        adapter = dict(backbone.get('adapter') or {})
        backbones[prefix] = dict(
            method=adapter.pop('type', None), options=adapter,
            tuning=backbone.get('tuning'),
            architecture={k: v for k, v in backbone.items()
                          if k not in ('adapter', 'tuning', 'init_cfg')},
            base=dict(checkpoint=base.get('checkpoint'),
                      sha256=base.get('sha256'),
                      source=base.get('source'),
                      frozen_not_in_base=list(
                          base.get('frozen_not_in_base') or [])))
    return dict(format=SET_FORMAT, format_version=SET_FORMAT_VERSION,
                name=name, mmadapter_version=__version__,
                backbones=_json_plain(backbones), config=text)


def save_adapter_set(checkpoint: dict, path: str,
                     name: Optional[str] = None) -> Tuple[str, str]:
    """Write an adapter-only checkpoint dict as ``path``'s safetensors and
    JSON pair (optimizer and scheduler states are not carried over).
    Returns both paths."""
    from safetensors.torch import save_file
    info = adapter_info(checkpoint)
    if info is None or info.get('expanded'):
        raise AdapterCheckpointError(
            'Only adapter-only checkpoints (AdapterCheckpointHook, or '
            'tools/model_converters/extract_adapter.py for a full one) '
            'become adapter set files.')
    tensors_path, json_path = set_paths(path)
    name = name or osp.basename(tensors_path)[:-len('.safetensors')]
    description = describe_set(info, name)
    meta = checkpoint.get('meta') or {}
    if meta.get('dataset_meta'):
        description['dataset_meta'] = _json_plain(meta['dataset_meta'])
    tensors = {k: v.detach().cpu().contiguous().clone()
               for k, v in checkpoint['state_dict'].items()}
    os.makedirs(osp.dirname(osp.abspath(tensors_path)), exist_ok=True)
    save_file(tensors, tensors_path, metadata=dict(format=SET_FORMAT))
    description['tensors_sha256'] = file_sha256(tensors_path)
    with open(json_path, 'w') as f:
        json.dump(description, f, indent=2)
    return tensors_path, json_path


def read_set_description(path: str) -> dict:
    """The JSON file of a pair, checked to be one."""
    _, json_path = set_paths(path)
    if not osp.isfile(json_path):
        raise FileNotFoundError(
            f'Adapter set {path}: its description {json_path} is missing; '
            'an adapter set is NAME.safetensors with NAME.json beside it.')
    with open(json_path) as f:
        try:
            description = json.load(f)
        except json.JSONDecodeError as error:
            raise AdapterCheckpointError(
                f'{json_path} is not valid JSON ({error}).') from None
    if not isinstance(description, dict) or \
            description.get('format') != SET_FORMAT:
        raise AdapterCheckpointError(
            f'{json_path} does not describe an adapter set (no format '
            f'{SET_FORMAT!r}).')
    if description.get('format_version', 0) > SET_FORMAT_VERSION:
        raise AdapterCheckpointError(
            f"{json_path} has format {description['format_version']}, newer "
            f'than this mmadapter ({__version__}) reads; update mmadapter.')
    return description


def adapter_set_checkpoint(path: str, map_location='cpu') -> dict:
    """The adapter-only checkpoint dict of a safetensors + JSON pair."""
    from safetensors.torch import load_file as load_tensors
    tensors_path, json_path = set_paths(path)
    description = read_set_description(path)
    if not osp.isfile(tensors_path):
        raise FileNotFoundError(
            f'Adapter set {path}: its tensors {tensors_path} are missing.')
    recorded = description.get('tensors_sha256')
    if recorded and file_sha256(tensors_path) != recorded:
        raise AdapterCheckpointError(
            f'{tensors_path} is not the file {json_path} describes (sha256 '
            'differs): the pair was mixed up or one of them changed. Copy '
            'both files of the set again.')
    device = map_location if isinstance(map_location, str) else 'cpu'
    state = load_tensors(tensors_path, device=device)
    bases = {prefix: dict(entry['base'])
             for prefix, entry in description['backbones'].items()}
    meta = {ADAPTER_META_KEY: dict(format_version=FORMAT_VERSION,
                                   mmadapter_version=description.get(
                                       'mmadapter_version'),
                                   config=description['config'],
                                   bases=bases),
            'adapter_set': description.get('name')}
    if description.get('dataset_meta'):
        meta['dataset_meta'] = description['dataset_meta']
    return dict(meta=meta, state_dict=state)


def read_adapter_file(path: str, map_location='cpu') -> dict:
    """An adapter-only checkpoint from either form: a safetensors + JSON
    pair, or a ``.pth`` file (weights-only, :mod:`.safe_load`)."""
    if is_adapter_set_file(path):
        return adapter_set_checkpoint(path, map_location)
    return read_checkpoint_file(path, map_location)
