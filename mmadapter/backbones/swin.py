"""AdapterSwinTransformer: mmdet's SwinTransformer with adapters and tuning
policies. With ``adapter=None`` and the default policy it is the stock Swin."""
from typing import Dict

import torch.nn.functional as F
from mmengine.utils import to_2tuple
from mmdet.models.backbones.swin import (SwinBlock, SwinTransformer,
                                         swin_converter)

from mmadapter.converters import is_official_swin, rename_official_mona_keys
from mmadapter.insertion import AdaptedBlockMixin
from mmadapter.registry import MODELS
from .base import AdapterBackboneMixin


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

    ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts Microsoft's
    official Swin files and those of the official Mona code (converted on
    load) and mmdet/mmseg/mmadapter ones, with or without a ``backbone.``
    prefix; ``convert_weights`` is not needed.
    """

    adapted_block_cls = AdaptedSwinBlock

    def __init__(self, *args, adapter=None, tuning=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_adapters(adapter, tuning)

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

    def freeze_stock_stages(self):
        # mmdet's numbering: 0 freezes the patch embedding (Microsoft's
        # frozen_stages=1), N >= 1 also stages 0..N-1 and their out norms
        SwinTransformer._freeze_stages(self)

    def derived_state_keys(self):
        return tuple(k for k in self.state_dict()
                     if k.endswith('relative_position_index'))

    def convert_pretrained(self, state_dict, model):
        if is_official_swin(state_dict):
            state_dict = {
                k[len('backbone.'):]: v
                for k, v in swin_converter(state_dict).items()
            }
        state_dict = rename_official_mona_keys(state_dict)
        return resize_relative_position_tables(state_dict, model)

    def init_weights(self):
        self.init_pretrained_or_stock(
            lambda: SwinTransformer.init_weights(self))
