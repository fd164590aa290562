"""AdapterSwinTransformer: mmdet's SwinTransformer with adapters and tuning
policies. With ``adapter=None`` and the default policy it is the stock Swin."""
import re
from collections import OrderedDict
from typing import Dict

import torch.nn.functional as F
from mmdet.models.backbones.swin import (
    SwinBlock,
    SwinTransformer,
    swin_converter,
)
from mmengine.utils import to_2tuple

from mmadapter.insertion import AdaptedBlockMixin
from mmadapter.registry import MODELS
from .base import AdapterBackboneMixin
from .pretrained import ConversionError, StateDict, strip_prefix


class AdaptedSwinBlock(AdaptedBlockMixin, SwinBlock):
    """A SwinBlock running the adapted forward pass."""

    attn_drop_path_attr = 'drop'
    linear_paths = {
        'qkv': 'attn.w_msa.qkv',
        'proj': 'attn.w_msa.proj',
        'fc1': 'ffn.layers.0.0',
        'fc2': 'ffn.layers.1',
    }

    def attention_branch(self, x, hw_shape):
        return self.attn(x, hw_shape)

    def forward(self, x, hw_shape):
        return self.checkpointed_forward(x, hw_shape)


def resize_relative_position_tables(state_dict, model) -> Dict:
    """Bicubically resize relative position bias tables pretrained with
    another window size (e.g. 7 -> 12)."""
    own = model.state_dict()
    for key, table in list(state_dict.items()):
        if 'relative_position_bias_table' not in key or key not in own:
            continue
        length, heads = table.shape
        target_length, target_heads = own[key].shape
        if heads != target_heads or length == target_length:
            continue
        side, target_side = int(length**0.5), int(target_length**0.5)
        grid = table.t().reshape(1, heads, side, side).float()
        grid = F.interpolate(grid, size=(target_side, target_side),
                             mode='bicubic', align_corners=False)
        state_dict[key] = grid.reshape(heads, target_length).t().to(
            table.dtype).contiguous()
    return state_dict


def final_norm_to_last_stage(state_dict, last_stage: int) -> Dict:
    """Rename a classification checkpoint's final norm (``norm.*``, as
    Microsoft and mmpretrain name it) to the last stage's output norm
    (``norm3.*``), as mmcls/mmpretrain's Swin does on load; a checkpoint
    that has the stage norm already is left alone."""
    target = f'norm{last_stage}.'
    if any(k.startswith(target) for k in state_dict):
        return state_dict
    return {target + k[len('norm.'):] if k.startswith('norm.') else k: v
            for k, v in state_dict.items()}


# The official releases' naming, mapped on load by convert_pretrained and
# by the whole-file converters (mmadapter.checkpoint.official_files).
#: Official Mona module name -> mmadapter insertion site.
OFFICIAL_MONA_SITES = {
    'my_module_1': 'adapters.post_attn',
    'my_module_2': 'adapters.post_ffn',
}
#: First name component inside an official Mona -> MonaModule's.
OFFICIAL_MONA_PARTS = {
    'project1': 'down_proj',
    'project2': 'up_proj',
    'adapter_conv': 'mona_op',
    'norm': 'norm',
    'gamma': 'gamma',
    'gammax': 'gammax',
}
_OFFICIAL_MONA_KEY = re.compile(
    r'^(?P<block>(?:.*\.)?blocks\.\d+\.)(?P<module>my_module_[12])\.'
    r'(?P<part>[^.]+)(?P<rest>.*)$')


def is_official_swin(state_dict: StateDict) -> bool:
    """Microsoft's naming: ``layers.i.blocks.j...``, ``patch_embed.proj``."""
    return any(k.startswith('layers.') for k in state_dict)


def rename_official_mona_key(key: str) -> str:
    """``....blocks.j.my_module_1.project1.weight`` ->
    ``....blocks.j.adapters.post_attn.down_proj.weight``; other keys are
    returned unchanged. Raises on an unknown Mona parameter."""
    match = _OFFICIAL_MONA_KEY.match(key)
    if match is None:
        return key
    part = match['part']
    if part not in OFFICIAL_MONA_PARTS:
        raise ConversionError(
            f'{key}: unknown parameter {part!r} of an official Mona module '
            f'(known: {sorted(OFFICIAL_MONA_PARTS)}).')
    return (f"{match['block']}{OFFICIAL_MONA_SITES[match['module']]}."
            f"{OFFICIAL_MONA_PARTS[part]}{match['rest']}")


def rename_official_mona_keys(state_dict: StateDict) -> StateDict:
    """Rename the official Mona modules of an otherwise mmdet-named state
    dict (with or without a ``backbone.`` prefix)."""
    return OrderedDict((rename_official_mona_key(k), v)
                       for k, v in state_dict.items())


def has_official_mona(state_dict: StateDict) -> bool:
    return any(_OFFICIAL_MONA_KEY.match(k) for k in state_dict)


@MODELS.register_module()
class AdapterSwinTransformer(AdapterBackboneMixin, SwinTransformer):
    """Swin Transformer with parameter-efficient tuning.

    Takes every argument of ``mmdet.models.backbones.SwinTransformer`` plus:

    Args:
        adapter (dict | None): ``dict(type='Mona' | 'Houlsby' |
            'AdaptFormer' | 'LoRA' | 'LoRand', **options)``; None for none.
        tuning (str | None): which backbone parameters train: 'full',
            'fixed', 'bitfit', 'norm', 'partial-N' or 'adapter'. Default:
            'adapter' with an adapter, 'full' without.
        load_final_norm (bool): load a classification checkpoint's final
            norm (``norm.*``) into the last stage's output norm when
            ``out_indices`` has the last stage, as mmpretrain's Swin does
            (the classification configs). Default False: it is reported
            unused and the stage norm starts at its init, as in the
            official detection and segmentation runs.

    ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts Microsoft's
    official Swin files and those of the official Mona code (converted on
    load) and mmdet/mmseg/mmadapter ones, with or without a ``backbone.``
    prefix; ``convert_weights`` is not needed.
    """

    adapted_block_cls = AdaptedSwinBlock

    def __init__(self, *args, adapter=None, tuning=None,
                 load_final_norm=False, adapter_impl=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.load_final_norm = load_final_norm
        self.setup_adapters(adapter, tuning, build_args=kwargs,
                            adapter_impl=adapter_impl)

    def blocks(self):
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage.blocks):
                yield f'stages.{i}.blocks.{j}', block, self.num_features[i]

    def total_stride(self):
        stride = self.patch_embed.projection.stride[0]
        for stage in self.stages:
            if stage.downsample is not None:
                stride *= to_2tuple(stage.downsample.sampler.stride)[0]
        return stride

    def forward(self, x):
        # mmdet's Swin returns a list; OpenMMLab backbones return a tuple
        # (mmpretrain's necks accept nothing else, mmdet's and mmseg's
        # necks and heads only index it).
        return tuple(super().forward(x))

    def freeze_stock_stages(self):
        # mmdet's numbering: 0 freezes the patch embedding (Microsoft's
        # frozen_stages=1), N >= 1 also stages 0..N-1 and their out norms
        SwinTransformer._freeze_stages(self)

    def derived_state_keys(self):
        return tuple(k for k in self.state_dict()
                     if k.endswith('relative_position_index'))

    def convert_pretrained(self, state_dict, model):
        if is_official_swin(state_dict):
            state_dict = strip_prefix(swin_converter(state_dict), 'backbone.')
        state_dict = rename_official_mona_keys(state_dict)
        last = len(self.stages) - 1
        if self.load_final_norm and hasattr(self, f'norm{last}'):
            state_dict = final_norm_to_last_stage(state_dict, last)
        return resize_relative_position_tables(state_dict, model)

    def init_weights(self):
        self.init_pretrained_or_stock(
            lambda: SwinTransformer.init_weights(self))
