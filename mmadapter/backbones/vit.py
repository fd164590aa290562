"""AdapterViT: mmpretrain's VisionTransformer with adapters, tuning policies
and gradient checkpointing. With ``adapter=None`` it is the stock ViT."""
import math
import re
from typing import Dict, Tuple

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks.transformer import FFN
from mmengine.logging import print_log
from mmpretrain.models.backbones.vision_transformer import (
    TransformerEncoderLayer,
    VisionTransformer,
)
from mmpretrain.models.utils import resize_pos_embed

from mmadapter.adapters.base import AdapterConfigError
from mmadapter.insertion import AdaptedBlockMixin
from mmadapter.registry import MODELS
from .base import AdapterBackboneMixin


class AdaptedViTLayer(AdaptedBlockMixin, TransformerEncoderLayer):
    """A ViT encoder layer running the adapted forward pass.

    ``hw_shape`` is the patch grid of the current input; inside
    :class:`AdapterViT` it is passed in by the backbone.
    """

    attn_drop_path_attr = 'out_drop'
    linear_paths = {
        'qkv': 'attn.qkv',
        'proj': 'attn.proj',
        'fc1': 'ffn.layers.0.0',
        'fc2': 'ffn.layers.1',
    }
    with_cp = False

    def attention_branch(self, x, hw_shape):
        return self.attn(x)

    def forward(self, x, hw_shape=None):
        if hw_shape is None:
            raise ValueError(
                'AdaptedViTLayer needs the patch grid: call it as '
                'layer(x, hw_shape=(H, W)), or run it inside AdapterViT, '
                'which passes the grid of the current input.')
        return self.checkpointed_forward(x, tuple(hw_shape))


class CheckpointedViTLayer(TransformerEncoderLayer):
    """The stock ViT encoder layer under gradient checkpointing (used when
    ``with_cp=True`` and there is no adapter)."""

    with_cp = False

    def forward(self, x):
        if self.with_cp and torch.is_grad_enabled() and self.training:
            return cp.checkpoint(super().forward, x, use_reentrant=False)
        return super().forward(x)


# timm's ViT naming -> mmpretrain's (AugReg, ImageNet-21k, DeiT, MAE, ...).
TIMM_KEY_MAP: Tuple[Tuple[str, str], ...] = (
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.attn\.(qkv|proj)\.', r'layers.\1.attn.\2.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'^blocks\.(\d+)\.ls1\.gamma$', r'layers.\1.attn.gamma1.weight'),
    (r'^blocks\.(\d+)\.ls2\.gamma$', r'layers.\1.ffn.gamma2.weight'),
    (r'^norm_pre\.', 'pre_norm.'),
    (r'^norm\.', 'ln1.'),  # final norm
    (r'^fc_norm\.', 'ln2.'),  # MAE's pooled-feature norm (avg_featmap)
)


def is_timm_vit(state_dict: Dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(('blocks.', 'patch_embed.proj.'))
               for k in state_dict)


def convert_timm_vit(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename timm ViT keys to mmpretrain's; keys without a counterpart
    (``head``, MAE's decoder...) keep their names and are reported unused."""
    converted = {}
    for key, value in state_dict.items():
        for pattern, replacement in TIMM_KEY_MAP:
            new_key, hits = re.subn(pattern, replacement, key)
            if hits:
                key = new_key
                break
        converted[key] = value
    return converted


def num_prefix_tokens(state_dict: Dict[str, torch.Tensor]) -> int:
    """Tokens before the patches in a checkpoint's sequence: class token,
    DeiT's distillation token, register tokens."""
    count = sum(1 for k in ('cls_token', 'dist_token') if k in state_dict)
    if 'reg_token' in state_dict:
        count += state_dict['reg_token'].shape[1]
    return count


def fit_pos_embed(state_dict: Dict[str, torch.Tensor],
                  model: 'AdapterViT') -> Dict[str, torch.Tensor]:
    """Make the checkpoint's ``pos_embed`` fit ``model``: keep the class
    token's entry only if the model has one (zeros if the file has none),
    drop other prefix tokens, and resize the patch grid to the model's."""
    pos_embed = state_dict.get('pos_embed')
    if pos_embed is None or pos_embed.ndim != 3:
        return state_dict
    length = pos_embed.shape[1]
    prefix = num_prefix_tokens(state_dict)
    if math.isqrt(length - prefix)**2 != length - prefix:
        if math.isqrt(length)**2 != length:
            return state_dict  # unknown layout: reported as a shape mismatch
        prefix = 0  # timm's no_embed_class: patches only
    side = math.isqrt(length - prefix)
    grid = tuple(model.patch_embed.init_out_size)
    if (side, side) != grid:
        print_log(f'pos_embed: resizing the pretrained {side}x{side} patch '
                  f'grid to {grid[0]}x{grid[1]} ({model.interpolate_mode}).',
                  logger='current')
    patches = resize_pos_embed(pos_embed[:, prefix:], (side, side), grid,
                               mode=model.interpolate_mode,
                               num_extra_tokens=0)
    if model.num_extra_tokens:
        cls_entry = pos_embed[:, :1] if prefix else torch.zeros_like(
            pos_embed[:, :1])
        patches = torch.cat([cls_entry, patches], dim=1)
    return {**state_dict, 'pos_embed': patches}


@MODELS.register_module()
class AdapterViT(AdapterBackboneMixin, VisionTransformer):
    """Plain Vision Transformer with parameter-efficient tuning.

    Takes every argument of ``mmpretrain.models.VisionTransformer`` (``arch``,
    ``img_size``, ``patch_size``, ``out_indices``, ``out_type``,
    ``with_cls_token``, ``final_norm``, ``drop_path_rate``,
    ``interpolate_mode``, ...) plus:

    Args:
        adapter (dict | None): ``dict(type='Mona' | 'Houlsby' |
            'AdaptFormer' | 'LoRA' | 'LoRand', **options)``; None for none.
        tuning (str | None): which backbone parameters train: 'full',
            'fixed', 'bitfit', 'norm', 'partial-N' (the last N encoder
            layers) or 'adapter'. Default: 'adapter' with an adapter, 'full'
            without.
        with_cp (bool): gradient checkpointing of every encoder layer
            (adapted or stock). Default False.
        adapter_impl (str | None): the path every adapter runs, 'auto',
            'plain', 'fused' or 'compiled', over the adapter config's own
            ``impl`` (docs/fast_paths.md). Default None: the adapter's own.

    For dense heads use ``out_type='featmap'``: one (B, C, H/16, W/16) map
    per index of ``out_indices``. Position embeddings are interpolated to
    the grid of every input, square or not.

    Class token and Mona: every adapter sees the whole token sequence,
    class token first, and the patch grid (H, W). Token-wise adapters
    (Houlsby, AdaptFormer, LoRA, LoRand) treat the class token like any
    token. Mona's spatial convs are defined on the patch grid only: the
    class token goes through Mona's token-wise path (scaled norm, down
    projection, activation, up projection, skip) and bypasses the convs,
    and the patch tokens are processed exactly as in Swin.

    ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts mmpretrain
    ViT files and timm-format state dicts (``blocks.N...``; ImageNet-21k,
    AugReg, DeiT, MAE), converted on load; ``pos_embed`` is resized to the
    grid of ``img_size``.
    """

    adapted_block_cls = AdaptedViTLayer

    def __init__(self, *args, adapter=None, tuning=None, with_cp=False,
                 adapter_impl=None, **kwargs):
        super().__init__(*args, **kwargs)
        if adapter is not None and not all(
                isinstance(layer.ffn, FFN) for layer in self.layers):
            raise AdapterConfigError(
                'AdapterViT adapters need the standard MLP (mmcv FFN) in '
                "every layer; remove ffn_type='swiglu_fused' from layer_cfgs "
                'or set adapter=None.')
        self.with_cp = with_cp
        self.setup_adapters(adapter, tuning, build_args=kwargs,
                            adapter_impl=adapter_impl)
        self.patch_grid = self.patch_resolution
        self.patch_embed.register_forward_hook(self._record_patch_grid)
        for layer in self.layers:
            # on every layer: a set added later adapts stock layers
            layer.register_forward_pre_hook(self._pass_patch_grid,
                                            with_kwargs=True)
            if with_cp and not isinstance(layer, AdaptedViTLayer):
                layer.__class__ = CheckpointedViTLayer
            layer.with_cp = with_cp

    # The stock forward computes the patch grid from patch_embed's output
    # and calls every layer with the tokens only; these two hooks hand that
    # grid to the adapted layers without re-implementing the forward.
    def _record_patch_grid(self, module, args, output):
        self.patch_grid = tuple(output[1])

    def _pass_patch_grid(self, layer, args, kwargs):
        if isinstance(layer, AdaptedViTLayer) and len(args) < 2 \
                and kwargs.get('hw_shape') is None:
            return args, {**kwargs, 'hw_shape': self.patch_grid}
        return args, kwargs

    def blocks(self):
        for i, layer in enumerate(self.layers):
            yield f'layers.{i}', layer, self.embed_dims

    def total_stride(self):
        return self.patch_embed.projection.stride[0]

    def freeze_stock_stages(self):
        # mmpretrain's _freeze_stages also freezes pos_embed and the patch
        # embedding unconditionally: call it only when frozen_stages asks
        if self.frozen_stages > 0:
            self._freeze_stages()

    def convert_pretrained(self, state_dict, model):
        if is_timm_vit(state_dict):
            state_dict = convert_timm_vit(state_dict)
        return fit_pos_embed(state_dict, model)

    def init_weights(self):
        self.init_pretrained_or_stock(
            lambda: VisionTransformer.init_weights(self))
