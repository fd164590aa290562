"""A simple feature pyramid for plain ViTs (the ViTDet design, Li et al.,
ECCV 2022): every level is built from the backbone's last stride-16 map
alone, by deconvolution (finer levels), identity or max-pooling (coarser)."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.utils.norm import LayerNorm2d

from mmadapter.registry import MODELS

# Channel-wise LayerNorm on (B, C, H, W), as in ViTDet. mmpretrain registers
# it as 'LN2d' in its own scope only, so the name is resolved here.
_NORMS_BY_NAME = {'LN2d': LayerNorm2d}


def resolve_norm_cfg(norm_cfg: Optional[Dict]) -> Optional[Dict]:
    if norm_cfg is None or norm_cfg.get('type') not in _NORMS_BY_NAME:
        return norm_cfg
    return {**norm_cfg, 'type': _NORMS_BY_NAME[norm_cfg['type']]}


def rescale_stage(channels: int, scale: float, norm_cfg: Optional[Dict],
                  act_cfg: Dict) -> Tuple[nn.Module, int]:
    """The module taking a stride-s map to stride s / ``scale``, and the
    channels it outputs (ViTDet halves them per 2x upsampling)."""
    if scale == 4.0:
        mid, out = channels // 2, channels // 4
        layers = [nn.ConvTranspose2d(channels, mid, 2, stride=2)]
        if norm_cfg is not None:
            layers.append(build_norm_layer(norm_cfg, mid)[1])
        layers += [build_activation_layer(act_cfg),
                   nn.ConvTranspose2d(mid, out, 2, stride=2)]
        return nn.Sequential(*layers), out
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), \
            channels // 2
    if scale == 1.0:
        return nn.Identity(), channels
    if scale == 0.5:
        return nn.MaxPool2d(kernel_size=2, stride=2), channels
    raise ValueError(f'SimpleFeaturePyramid: scale factor {scale} is not '
                     'supported; use any of 4.0, 2.0, 1.0, 0.5.')


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """ViTDet-style feature pyramid from the last backbone map.

    Each level rescales the last input map (deconvolutions for 4x and 2x,
    identity for 1x, max-pooling for 0.5x), then applies a 1x1 conv to
    ``out_channels`` and a 3x3 conv, each followed by ``norm_cfg``.

    Args:
        in_channels (int | Sequence[int]): channels of the backbone maps;
            only the last map (and its channel count) is used.
        out_channels (int): channels of every output level.
        scale_factors (Sequence[float]): one level per factor, finest
            first. From a stride-16 ViT map the default (4, 2, 1, 0.5)
            gives strides 4, 8, 16, 32 (Mask R-CNN style);
            (2, 1, 0.5) gives strides 8, 16, 32 for RetinaNet.
        num_extra_levels (int): coarser levels added after the last one,
            each at half the resolution of the previous: with
            ``extra_level_type='conv'`` a 3x3 stride-2 conv (RetinaNet's P6
            and P7: two levels), with ``'maxpool'`` a stride-2 subsampling
            (Mask R-CNN's P6).
        extra_level_type (str): 'conv' or 'maxpool'.
        relu_before_extra_convs (bool): apply ReLU to the input of every
            extra conv after the first (as mmdet's FPN option of that name
            and detectron2's P6P7 do; mmdet's RetinaNet FPN leaves it off).
        norm_cfg (dict | None): norm after the rescaling deconv and both
            convs of each level. 'LN2d' (channel-wise LayerNorm, ViTDet's
            choice), 'BN', 'SyncBN', 'GN', ... or None.
        act_cfg (dict): activation between the two 4x deconvolutions.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_extra_levels: int = 0,
                 extra_level_type: str = 'conv',
                 relu_before_extra_convs: bool = False,
                 norm_cfg: Optional[Dict] = dict(type='LN2d', eps=1e-6),
                 act_cfg: Dict = dict(type='GELU'),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int):
            in_channels = list(in_channels)[-1]
        if not scale_factors:
            raise ValueError('SimpleFeaturePyramid needs at least one scale '
                             'factor, e.g. (4.0, 2.0, 1.0, 0.5).')
        if extra_level_type not in ('conv', 'maxpool'):
            raise ValueError(
                f"SimpleFeaturePyramid: extra_level_type must be 'conv' or "
                f"'maxpool', got {extra_level_type!r}.")
        if num_extra_levels < 0:
            raise ValueError('SimpleFeaturePyramid: num_extra_levels must be '
                             f'>= 0, got {num_extra_levels}.')
        norm_cfg = resolve_norm_cfg(norm_cfg)
        self.scale_factors = tuple(float(s) for s in scale_factors)
        self.num_extra_levels = num_extra_levels
        self.extra_level_type = extra_level_type
        self.relu_before_extra_convs = relu_before_extra_convs

        self.rescales = nn.ModuleList()
        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        for scale in self.scale_factors:
            rescale, channels = rescale_stage(in_channels, scale, norm_cfg,
                                              act_cfg)
            self.rescales.append(rescale)
            self.lateral_convs.append(
                ConvModule(channels, out_channels, 1, norm_cfg=norm_cfg,
                           act_cfg=None))
            self.output_convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1,
                           norm_cfg=norm_cfg, act_cfg=None))
        self.extra_convs = nn.ModuleList()
        if extra_level_type == 'conv':
            for _ in range(num_extra_levels):
                self.extra_convs.append(
                    nn.Conv2d(out_channels, out_channels, 3, stride=2,
                              padding=1))

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> Tuple[torch.Tensor, ...]:
        x = inputs if isinstance(inputs, torch.Tensor) else inputs[-1]
        outs = [
            output_conv(lateral_conv(rescale(x)))
            for rescale, lateral_conv, output_conv in zip(
                self.rescales, self.lateral_convs, self.output_convs)
        ]
        for i in range(self.num_extra_levels):
            if self.extra_level_type == 'maxpool':
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
                continue
            source = outs[-1]
            if i > 0 and self.relu_before_extra_convs:
                source = F.relu(source)
            outs.append(self.extra_convs[i](source))
        return tuple(outs)
