"""Adapter-only checkpoints: what they hold, how to save, load and merge them.

An adapter-only checkpoint is an ordinary mmengine checkpoint (``meta``,
``state_dict`` and, from training, ``optimizer``, ``param_schedulers``,
``message_hub``) whose ``state_dict`` keeps only what the base weights
cannot restore:

* every parameter that trains (adapters, neck, head, and any backbone
  parameter the tuning policy trains);
* every entry outside the backbone (neck/head buffers such as BatchNorm
  running statistics, and frozen neck/head parameters if there are any);
* inside the backbone, the buffers of modules that own a trained parameter,
  and the frozen parameters the base file lacks (Swin's per-stage output
  norms ``norm0..3`` on a Microsoft ImageNet base: they keep their initial
  values, which nothing else could restore). The record lists those per
  backbone (``frozen_not_in_base``).

``meta['adapter_checkpoint']`` marks it and records the config text that
built the model and, per backbone, the base checkpoint (path, sha256, and
whether it came from ``init_cfg`` or ``load_from``). Loading puts the base
weights back (:func:`expand_adapter_checkpoint`): the backbone's frozen
weights come from the base file, read and converted exactly as its
``init_cfg`` would, so this also works where ``init_weights`` never runs
(``Runner.test()``).

The package: :mod:`.records` (what a checkpoint holds and its base files'
identity), :mod:`.base_weights` (reading and checking base files),
:mod:`.saving`, :mod:`.loading`, :mod:`.merging` (whole files: merge with
the base, extract, fold LoRA), :mod:`.official_files` (converting the
official Swin and Mona releases) and :mod:`.checks` (the files a run is
given, checked before it starts).

Every read is weights-only (:mod:`mmadapter.safe_load`, re-exported here).
"""
from mmadapter.safe_load import (
                                 ALLOWED_TYPES,
                                 TRUST_KEY,
                                 TRUST_OPTION,
                                 UnsafeCheckpointError,
                                 add_trust_option,
                                 checkpoint_safety,
                                 load_checkpoint,
                                 load_file,
                                 script_loads,
)
from .adapter_set_files import (
                                 adapter_set_checkpoint,
                                 is_adapter_set_file,
                                 read_adapter_file,
                                 read_set_description,
                                 save_adapter_set,
)
from .base_weights import (
                                 base_backbone_keys,
                                 check_base_hash,
                                 frozen_keys_not_in_base,
                                 read_base_backbone,
                                 resolve_base_path,
)
from .loading import (
                                 ExpansionReport,
                                 base_backbone_state,
                                 checkpoint_config,
                                 expand_adapter_checkpoint,
                                 load_adapter_checkpoint,
                                 load_checkpoint_dict,
                                 verify_frozen_backbone,
)
from .merging import (
                                 extract_adapter_checkpoint,
                                 fold_lora,
                                 merge_adapter_checkpoint,
                                 stock_backbone_type,
                                 strip_adapter_record,
)
from .records import (
                                 ADAPTER_META_KEY,
                                 FORMAT_VERSION,
                                 AdapterCheckpointError,
                                 BaseCheckpointWarning,
                                 BaseOverride,
                                 adapter_info,
                                 adapter_record,
                                 adapter_state_dict,
                                 adapter_state_keys,
                                 backbone_prefixes,
                                 base_record,
                                 base_records_from_init_cfg,
                                 config_text,
                                 file_sha256,
                                 is_adapter_checkpoint,
                                 local_file,
                                 pretrained_path,
                                 read_checkpoint_file,
                                 with_metadata,
                                 write_checkpoint,
)
from .saving import reduce_checkpoint, save_adapter_checkpoint

__all__ = [
    'adapter_set_checkpoint', 'is_adapter_set_file', 'read_adapter_file',
    'read_set_description', 'save_adapter_set',
    'ALLOWED_TYPES', 'TRUST_KEY', 'TRUST_OPTION', 'UnsafeCheckpointError',
    'add_trust_option', 'checkpoint_safety', 'load_checkpoint', 'load_file',
    'script_loads',
    'ADAPTER_META_KEY', 'AdapterCheckpointError', 'BaseCheckpointWarning',
    'BaseOverride', 'ExpansionReport', 'FORMAT_VERSION', 'adapter_info',
    'adapter_record', 'adapter_state_dict', 'adapter_state_keys',
    'backbone_prefixes', 'base_backbone_keys', 'base_backbone_state',
    'base_record', 'base_records_from_init_cfg', 'check_base_hash',
    'checkpoint_config', 'config_text', 'expand_adapter_checkpoint',
    'extract_adapter_checkpoint', 'file_sha256', 'fold_lora',
    'frozen_keys_not_in_base', 'is_adapter_checkpoint',
    'load_adapter_checkpoint', 'load_checkpoint_dict', 'local_file',
    'merge_adapter_checkpoint', 'pretrained_path', 'read_base_backbone',
    'read_checkpoint_file', 'reduce_checkpoint', 'resolve_base_path',
    'save_adapter_checkpoint', 'stock_backbone_type', 'strip_adapter_record',
    'verify_frozen_backbone', 'with_metadata', 'write_checkpoint'
]
