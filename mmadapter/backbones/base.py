"""What AdapterSwinTransformer and AdapterViT share: building the adapter
spec and tuning policy from the config, adapting every block, initialising
(pretrained or from scratch) and re-applying the tuning policy afterwards,
and several named adapter sets over one copy of the frozen weights.

Named adapter sets (as Hugging Face peft's ``add_adapter`` /
``set_adapter`` / ``delete_adapter``)::

    backbone.add_adapter_set('seg', dict(type='LoRA', rank=8))
    backbone.activate_adapter_set('seg')      # a few pointer swaps per block
    backbone.adapter_set_names()              # ['default', 'seg']
    backbone.delete_adapter_set('default')

Only the active set is in the module tree: with set ``X`` active the
backbone's parameters, state-dict keys and outputs are exactly those of the
single-adapter model ``X`` was trained as, so tuning, optimizers and
adapter-only checkpoints see one set. The other sets are kept beside the
tree (moved by ``.to()``/``.half()`` with it) and share its frozen weights.
A backbone built with ``adapter=dict(...)`` holds one set, named
``'default'``. Sets from adapter-only checkpoints:
:mod:`mmadapter.apis.adapter_sets`.
"""
import inspect
from typing import Dict, Iterable, List, Optional, Tuple, Type

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log

from mmadapter.adapters.base import (
    AdapterSpec,
    build_adapter,
    check_impl,
    set_adapter_impl,
)
from mmadapter.insertion import (
    AdaptedBlockMixin,
    AdapterSet,
    AdapterSetError,
    adapter_parameter_names,
    build_block_adapters,
    install_block_adapters,
    merge_lora,
    prepare_block,
    reset_adapters,
)
from mmadapter.tuning import apply_policy, normalize_policy
from .pretrained import LoadReport, load_pretrained

#: Name of the set a backbone built with ``adapter=dict(...)`` holds.
DEFAULT_SET = 'default'
#: Policies under which several sets can share the frozen weights: nothing
#: but adapters trains.
SHARING_POLICIES = ('adapter', 'fixed')
#: Build arguments that do not change what the shared frozen backbone
#: computes at inference (they differ between tasks sharing it).
PER_TASK_ARGS = ('out_indices', 'drop_path_rate', 'drop_rate',
                 'attn_drop_rate', 'with_cp', 'init_cfg', 'pretrained',
                 'adapter', 'tuning', 'frozen_stages', 'convert_weights')


class AdapterBackboneMixin:
    """Mixed into a stock backbone class (listed first).

    The subclass calls :meth:`setup_adapters` at the end of ``__init__`` and
    implements :meth:`blocks` and :meth:`convert_pretrained`.
    """

    adapted_block_cls: Type[AdaptedBlockMixin]

    def setup_adapters(self, adapter, tuning, build_args=None,
                       adapter_impl=None) -> None:
        """Build the ``'default'`` set from ``adapter`` (if any) and apply
        ``tuning``. ``build_args``: the keyword arguments the backbone was
        built with (its architecture, see :meth:`architecture`).
        ``adapter_impl``: the path every adapter of every set runs, over
        each set's own ``impl`` option (None: each set's own)."""
        self.adapter_impl = None if adapter_impl is None else check_impl(
            f'{type(self).__name__} adapter_impl', adapter_impl)
        spec = build_adapter(adapter)
        self.tuning = normalize_policy(tuning, spec is not None)
        self.build_args = dict(build_args or {})
        self.adapter_spec: Optional[AdapterSpec] = None
        self.adapter_sets: Dict[str, AdapterSet] = {}
        self.active_adapter_set: Optional[str] = None
        if spec is not None:
            self.add_adapter_set(DEFAULT_SET, spec, activate=True)
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
        """Fold the active set's LoRA updates into the frozen weights
        (inference). Unmerge before switching sets."""
        return merge_lora(self)

    def unmerge_lora(self) -> int:
        return merge_lora(self, unmerge=True)

    # -- named adapter sets ----------------------------------------------
    def adapter_set_names(self) -> List[str]:
        """Names of the loaded sets, in the order they were added."""
        return list(self.adapter_sets)

    def adapter_set(self, name: str) -> AdapterSet:
        self._check_known(name)
        return self.adapter_sets[name]

    def build_adapter_set(self, name: str, adapter) -> AdapterSet:
        """Build set ``name`` from an adapter config (``dict(type=...)``)
        over the shared frozen weights, initialised as its method specifies,
        without adding it. Refused for a duplicate name, a bad config, or a
        tuning policy that trains the shared weights."""
        self._check_new_name(name)
        spec = build_adapter(adapter)
        if spec is None:
            raise AdapterSetError(
                f'Adapter set {name!r} needs an adapter config '
                "dict(type=...), got None.")
        if self.adapter_sets and self.tuning not in SHARING_POLICIES:
            raise AdapterSetError(
                f"tuning='{self.tuning}' trains backbone weights that all "
                'adapter sets share, so this backbone can hold one set only. '
                "Build it with tuning='adapter' (training) or 'fixed' "
                '(inference) to add more.')
        blocks = {}
        for path, block, dims in self.blocks():
            # no-op after the first set; computes as the stock block
            prepare_block(block, self.adapted_block_cls)
            blocks[path] = build_block_adapters(block, spec, dims)
        # initialised as the method specifies by the modules' constructors
        new = AdapterSet(name, spec, blocks)
        trains = self.tuning in ('adapter', 'full')
        reference = next(iter(self.parameters()))  # device and dtype
        if self.adapter_impl is not None:
            self._set_impl(new, self.adapter_impl)
        for module in new.owned_modules():
            module.requires_grad_(trains)
            module.to(device=reference.device, dtype=reference.dtype)
            module.train(self.training)
        return new

    def add_adapter_set(self, name: str, adapter,
                        activate: bool = False) -> AdapterSet:
        """Add set ``name``: built from an adapter config, or one that
        :meth:`build_adapter_set` built for this backbone."""
        if isinstance(adapter, AdapterSet):
            if adapter.name != name or set(adapter.blocks) != set(
                    self.block_prefixes()):
                raise AdapterSetError(
                    f'Adapter set {adapter.name!r} was not built for this '
                    f'backbone under the name {name!r}.')
            self._check_new_name(name)
            new = adapter
        else:
            new = self.build_adapter_set(name, adapter)
        self.adapter_sets[name] = new
        if activate:
            self.activate_adapter_set(name)
        return new

    def activate_adapter_set(self, name: Optional[str]) -> None:
        """Run set ``name`` from now on (None: no adapter, the frozen base).
        Constant in the model size: no tensor is touched or copied, only
        the modules each block runs are swapped. Refused while the active
        set's LoRA updates are merged into the shared weights."""
        if name == self.active_adapter_set:
            return
        if name is not None:
            self._check_known(name)
        self._check_unmerged(f'switching to adapter set {name!r}')
        target = self.adapter_sets[name] if name is not None else None
        for path, block, _ in self.blocks():
            if isinstance(block, AdaptedBlockMixin):
                install_block_adapters(
                    block, target.blocks[path] if target else None)
        self.active_adapter_set = name
        self.adapter_spec = target.spec if target else None
        if self.tuning not in SHARING_POLICIES:  # a single set: exact policy
            self.apply_tuning()

    def set_adapter_impl(self, impl: str) -> None:
        """Run ``impl`` ('auto', 'plain', 'fused' or 'compiled') in every
        adapter of every set, and of the sets added later."""
        self.adapter_impl = check_impl(f'{type(self).__name__}.'
                                       'set_adapter_impl', impl)
        for adapter_set in self.adapter_sets.values():
            self._set_impl(adapter_set, impl)

    @staticmethod
    def _set_impl(adapter_set: AdapterSet, impl: str) -> None:
        for block in adapter_set.blocks.values():
            set_adapter_impl(block.sites, impl)
            for wrapper in block.linears.values():
                set_adapter_impl(wrapper, impl)

    def delete_adapter_set(self, name: str) -> None:
        """Remove set ``name``; deleting the active one leaves no set
        active (the frozen base)."""
        self._check_known(name)
        if name == self.active_adapter_set:
            self._check_unmerged(f'deleting adapter set {name!r}')
            self.activate_adapter_set(None)
        del self.adapter_sets[name]

    def _check_new_name(self, name) -> None:
        if not isinstance(name, str) or not name:
            raise AdapterSetError(
                f'An adapter set needs a non-empty string name, got {name!r}.')
        if name in self.adapter_sets:
            raise AdapterSetError(
                f'{type(self).__name__} already holds an adapter set named '
                f'{name!r} (loaded: {self.adapter_set_names()}); delete it '
                'first (delete_adapter_set) or choose another name.')

    def _check_known(self, name) -> None:
        if name not in self.adapter_sets:
            raise AdapterSetError(
                f'{type(self).__name__} has no adapter set named {name!r}; '
                f'loaded sets: {self.adapter_set_names() or "none"}.')

    def _check_unmerged(self, doing: str) -> None:
        active = self.adapter_sets.get(self.active_adapter_set)
        if active is not None and active.merged():
            raise AdapterSetError(
                f'Cannot go on {doing}: the LoRA updates of the active set '
                f'{self.active_adapter_set!r} are merged into the frozen '
                'weights every set shares. Call unmerge_lora() first.')

    def _apply(self, fn, *args, **kwargs):
        # .to(), .half(), .cuda() also reach the sets outside the tree
        super()._apply(fn, *args, **kwargs)
        for name, adapter_set in getattr(self, 'adapter_sets', {}).items():
            if name != self.active_adapter_set:
                for module in adapter_set.owned_modules():
                    module._apply(fn, *args, **kwargs)
        return self

    def architecture(self) -> Dict:
        """The build arguments that define the frozen computation (all but
        :data:`PER_TASK_ARGS`), with the class defaults filled in: two
        backbones with equal architectures and the same base weights
        compute the same features."""
        return architecture_of(type(self), self.build_args)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def architecture_of(backbone_cls: type, build_args: Dict) -> Dict:
    """:meth:`AdapterBackboneMixin.architecture` of a backbone of class
    ``backbone_cls`` built with ``build_args`` (a config without
    ``type``)."""
    defaults = {}
    for cls in reversed(backbone_cls.__mro__):
        init = cls.__dict__.get('__init__')
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.default is not inspect.Parameter.empty:
                defaults[param.name] = param.default
    args = {**defaults, **{k: v for k, v in build_args.items()
                           if k != 'type'}}
    return {k: _plain(v) for k, v in sorted(args.items())
            if k not in PER_TASK_ARGS}
