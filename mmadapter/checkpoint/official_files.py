"""Whole-file conversion of the official releases' checkpoints to
mmadapter's naming (tools/model_converters), with a report of what was
renamed, kept and left out. The key maps themselves sit beside the model
they serve (:mod:`mmadapter.backbones.swin`):

* Microsoft's official Swin (``layers.i.blocks.j.attn.qkv`` ...; ImageNet
  classifiers and the detection/segmentation forks), with or without a
  ``backbone.`` prefix: mmdet's ``swin_converter`` does the renaming and the
  patch-merging reorder.
* The official Mona code (mmdet 2.x / mmseg 0.x forks of Microsoft's Swin):
  two ``Mona`` modules per block, ``my_module_1`` after the attention residual
  and ``my_module_2`` after the MLP residual, become the ``post_attn`` and
  ``post_ffn`` adapters of :class:`~mmadapter.adapters.MonaModule`.

Neck and head keys of mmdet 2.x Cascade/Mask R-CNN, RetinaNet and mmseg 0.x
UperNet checkpoints have the same names in mmdet 3 / mmseg 1 and are kept;
``check_against_model`` reports any that a given model does not accept.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch.nn as nn
from mmdet.models.backbones.swin import swin_converter

from mmadapter.backbones.pretrained import (
    ConversionError,
    StateDict,
    split_backbone,
    unwrap_state_dict,
)
from mmadapter.backbones.swin import (
    has_official_mona,
    is_official_swin,
    rename_official_mona_key,
)

_SWIN_V2_MARKERS = ('logit_scale', 'cpb_mlp', 'relative_coords_table')


@dataclass
class ConversionReport:
    """What a conversion did, key by key."""
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)
    dropped: List[Tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """Counts and one line per key pattern (block and stage indices
        collapsed to ``*``), so a Swin-L file stays readable."""
        lines = [f'renamed {len(self.renamed)}, kept {len(self.kept)}, '
                 f'left out {len(self.dropped)} keys']
        if self.renamed:
            lines.append('renamed:')
            lines += _grouped(f'{_pattern(a)} -> {_pattern(b)}'
                              for a, b in self.renamed)
        if self.kept:
            lines.append('kept unchanged:')
            lines += _grouped(_pattern(k) for k in self.kept)
        if self.dropped:
            lines.append('left out:')
            lines += _grouped(f'{_pattern(k)} ({why})'
                              for k, why in self.dropped)
        return '\n'.join(lines)


def _pattern(key: str) -> str:
    """Stage, block and conv-list indices as ``*`` (not the fixed indices
    inside an FFN, ``ffn.layers.0.0``)."""
    key = re.sub(r'(?<!ffn\.)\b(layers|stages|blocks)\.\d+\.', r'\1.*.', key)
    return re.sub(r'(_convs|_fcs)\.\d+\.', r'\1.*.', key)


def _grouped(lines) -> List[str]:
    counts: Dict[str, int] = OrderedDict()
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    return [f'  {line}' + (f'  [x{n}]' if n > 1 else '')
            for line, n in counts.items()]


def official_swin_to_mmdet(backbone: StateDict, report: ConversionReport,
                           source_prefix: str = '') -> StateDict:
    """Microsoft-named backbone keys (no prefix) -> mmdet's names, with the
    ``backbone.`` prefix. Official Mona keys pass through unrenamed. The
    report names source keys with ``source_prefix``."""
    if any(marker in k for k in backbone for marker in _SWIN_V2_MARKERS):
        raise ConversionError(
            'This is a Swin V2 checkpoint (logit_scale / cpb_mlp keys); '
            'mmdet and mmadapter implement Swin V1 only.')
    if not is_official_swin(backbone):
        out = OrderedDict()
        for key, value in backbone.items():
            out['backbone.' + key] = value
            if source_prefix != 'backbone.':
                report.renamed.append((source_prefix + key, 'backbone.' + key))
            else:
                report.kept.append('backbone.' + key)
        return out
    has_stage_norms = any(re.match(r'norm\d+\.', k) for k in backbone)
    usable = OrderedDict()
    for key, value in backbone.items():
        source_key = source_prefix + key
        if key.startswith('head.') or key.startswith('head_'):
            report.dropped.append((source_key, 'ImageNet classifier'))
        elif key.endswith('attn_mask'):
            report.dropped.append((source_key, 'buffer rebuilt at run time'))
        elif key.startswith('norm.') and not has_stage_norms:
            report.dropped.append(
                (source_key, 'final norm of the classifier; dense-task Swin '
                 'has per-stage norm0..3'))
        else:
            usable[key] = value
    converted = swin_converter(usable)  # keeps order, one output per input
    for old, new in zip(usable, converted):
        old = source_prefix + old
        if old == new:
            report.kept.append(old)
        else:
            report.renamed.append((old, new))
    return converted


def convert_official_swin(checkpoint) -> Tuple[StateDict, ConversionReport]:
    """A Microsoft Swin checkpoint (bare, under ``model``/``state_dict``,
    with or without ``backbone.``) -> mmdet naming under ``backbone.``.
    Non-backbone keys of a whole-model file are kept."""
    state_dict = unwrap_state_dict(checkpoint)
    backbone, rest = split_backbone(state_dict)
    if not backbone:
        raise ConversionError('The checkpoint holds no tensors.')
    report = ConversionReport()
    source_prefix = 'backbone.' if any(
        k.startswith('backbone.') for k in state_dict) else ''
    out = official_swin_to_mmdet(backbone, report, source_prefix)
    for key, value in rest.items():
        out[key] = value
        report.kept.append(key)
    return out, report


def convert_official_mona(checkpoint) -> Tuple[StateDict, ConversionReport]:
    """A checkpoint of the official Mona code -> mmadapter naming: Swin keys
    as :func:`convert_official_swin`, ``my_module_1/2`` to the ``post_attn``
    / ``post_ffn`` MonaModules, neck and head keys kept."""
    state_dict = unwrap_state_dict(checkpoint)
    if not has_official_mona(state_dict):
        raise ConversionError(
            'No official Mona modules (blocks.j.my_module_1/2) in this '
            'checkpoint. For a plain Swin checkpoint use swin2mmadapter.py.')
    converted, report = convert_official_swin(state_dict)
    report.renamed = [(old, rename_official_mona_key(new))
                      for old, new in report.renamed]
    out = OrderedDict((rename_official_mona_key(k), v)
                      for k, v in converted.items())
    return out, report


def upgrade_meta(meta) -> dict:
    """mmdet 2.x / mmseg 0.x ``meta`` (``CLASSES``, ``PALETTE``) ->
    mmengine's ``dataset_meta``; other entries are kept."""
    meta = dict(meta or {})
    dataset_meta = dict(meta.get('dataset_meta') or {})
    for old, new in (('CLASSES', 'classes'), ('PALETTE', 'palette')):
        if old in meta:
            dataset_meta.setdefault(new, meta.pop(old))
    if dataset_meta:
        meta['dataset_meta'] = dataset_meta
    return meta


@dataclass
class ModelCheck:
    """How a converted state dict fits a model."""
    missing: List[str]
    unexpected: List[str]
    shape_mismatch: List[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def summary(self) -> str:
        if self.ok:
            return 'every key matches the model.'
        lines = []
        for title, keys in (('missing from the file', self.missing),
                            ('not in the model', self.unexpected),
                            ('shape mismatch', self.shape_mismatch)):
            if keys:
                lines.append(f'{title} ({len(keys)}):')
                lines += _grouped(_pattern(k) for k in keys)
        return '\n'.join(lines)


def check_against_model(state_dict: StateDict, model: nn.Module) -> ModelCheck:
    own = model.state_dict()
    return ModelCheck(
        missing=[k for k in own if k not in state_dict],
        unexpected=[k for k in state_dict if k not in own],
        shape_mismatch=[
            f'{k} {tuple(v.shape)} vs {tuple(own[k].shape)}'
            for k, v in state_dict.items()
            if k in own and own[k].shape != v.shape
        ])
