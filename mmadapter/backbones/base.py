"""What AdapterSwinTransformer and AdapterViT share: building the adapter
spec and tuning policy from the config, adapting every block, initialising
(pretrained or from scratch) and re-applying the tuning policy afterwards."""
from typing import Dict, Iterable, List, Optional, Tuple, Type

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log

from mmadapter.adapters.base import AdapterSpec, build_adapter
from mmadapter.insertion import (AdaptedBlockMixin, adapt_block,
                                 adapter_parameter_names, merge_lora,
                                 reset_adapters)
from mmadapter.pretrained import LoadReport, load_pretrained
from mmadapter.tuning import apply_policy, normalize_policy


class AdapterBackboneMixin:
    """Mixed into a stock backbone class (listed first).

    The subclass calls :meth:`setup_adapters` at the end of ``__init__`` and
    implements :meth:`blocks` and :meth:`convert_pretrained`.
    """

    adapted_block_cls: Type[AdaptedBlockMixin]

    def setup_adapters(self, adapter, tuning) -> None:
        self.adapter_spec: Optional[AdapterSpec] = build_adapter(adapter)
        self.tuning = normalize_policy(tuning, self.adapter_spec is not None)
        if self.adapter_spec is not None:
            for _, block, dims in self.blocks():
                adapt_block(block, self.adapted_block_cls, self.adapter_spec,
                            dims)
        self.pretrained_report: Optional[LoadReport] = None
        self.apply_tuning()

    # -- to implement -----------------------------------------------------
    def blocks(self) -> Iterable[Tuple[str, nn.Module, int]]:
        """(module path, block, channel width) of every transformer block,
        in forward order."""
        raise NotImplementedError

    def convert_pretrained(self, state_dict: Dict[str, torch.Tensor],
                           model: nn.Module) -> Dict[str, torch.Tensor]:
        """Map a pretrained file's naming onto this backbone's."""
        return state_dict

    def total_stride(self) -> int:
        """Downsampling factor of the coarsest output."""
        raise NotImplementedError

    def freeze_stock_stages(self) -> None:
        """Freeze what the stock backbone's ``frozen_stages`` freezes (its
        stock ``train()`` repeats that on every call)."""
        raise NotImplementedError

    # -- shared behaviour ------------------------------------------------
    def forward(self, x):
        self.check_input_size(x)
        return super().forward(x)

    def train(self, mode=True):
        # The stock train() of mmdet's Swin and mmpretrain's backbones
        # returns None, which breaks `model.eval()` chains.
        super().train(mode)
        return self

    def check_input_size(self, x: torch.Tensor) -> None:
        stride = self.total_stride()
        if x.dim() != 4 or min(x.shape[-2:]) < stride:
            raise ValueError(
                f'{type(self).__name__} got an input of shape '
                f'{tuple(x.shape)}; it needs (B, C, H, W) images with H and W '
                f'at least its total stride {stride}. Resize or pad the '
                'images (check the Resize/RandomCrop steps of the pipeline).')

    def block_prefixes(self) -> List[str]:
        return [path for path, _, _ in self.blocks()]

    def apply_tuning(self) -> int:
        """(Re-)apply the tuning policy, then the stock backbone's own
        ``frozen_stages`` on top of it (a part the stock option freezes
        stays frozen whatever the policy); returns the trainable count."""
        apply_policy(self, self.tuning, self.block_prefixes())
        self.freeze_stock_stages()
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def adapter_state_keys(self) -> Tuple[str, ...]:
        return adapter_parameter_names(self)

    def derived_state_keys(self) -> Tuple[str, ...]:
        """Buffers computed from the config, not learned (never loaded)."""
        return ()

    def init_pretrained_or_stock(self, stock_init) -> None:
        """Body of ``init_weights``: load ``init_cfg`` weights or run the
        stock random init, then re-init adapters and re-apply tuning."""
        init_cfg = self.init_cfg or {}
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            if not init_cfg.get('checkpoint'):
                raise ValueError(
                    f'{type(self).__name__}: init_cfg type Pretrained needs '
                    'a checkpoint path.')
            self.pretrained_report = load_pretrained(
                self, init_cfg['checkpoint'], convert=self.convert_pretrained,
                adapter_keys=self.adapter_state_keys(),
                derived_keys=self.derived_state_keys())
        else:
            stock_init()
            reset_adapters(self)
        self.apply_tuning()
        self._is_init = True
        print_log(self.trainable_summary(),
                  logger=MMLogger.get_current_instance())

    def trainable_summary(self) -> str:
        total = sum(p.numel() for p in self.parameters())
        train = sum(p.numel() for p in self.parameters() if p.requires_grad)
        adapter = set(self.adapter_state_keys())
        n_adapter = sum(p.numel() for n, p in self.named_parameters()
                        if n in adapter)
        method = type(self.adapter_spec).__name__ \
            if self.adapter_spec is not None else 'none'
        return (f'{type(self).__name__}: adapter={method}, '
                f'tuning={self.tuning}: {train:,} of {total:,} backbone '
                f'parameters train ({100.0 * train / max(total, 1):.2f}%), '
                f'{n_adapter:,} in adapters.')

    def merge_lora(self) -> int:
        """Fold LoRA updates into the frozen weights (inference)."""
        return merge_lora(self)

    def unmerge_lora(self) -> int:
        return merge_lora(self, unmerge=True)
