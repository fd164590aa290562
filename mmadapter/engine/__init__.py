from .amp import CPUAmpOptimWrapper
from .atomic_checkpoint import AtomicCheckpointHook, CheckpointWriteError
from .checkpoint_hook import (
                              AdapterCheckpointHook,
                              AdapterCheckpointLoadHook,
                              enable_adapter_checkpoint_loading,
)
from .checkpoint_types_hook import CheckpointTypesHook
from .dataset_check_hook import DatasetCheckHook
from .dist import CPUDistributedDataParallel
from .hooks import NonFiniteLossHook, ParameterReportHook, RandomStateHook
from .layer_decay import BackboneLayerDecayOptimWrapperConstructor
from .model_record_hook import ModelRecordHook
from .param_schedulers import (
                              PolyLRWithWarmup,
                              PolyParamWithWarmup,
                              WarmupCosineAnnealingLR,
)

__all__ = [
    'AdapterCheckpointHook', 'AtomicCheckpointHook', 'CheckpointWriteError',
    'AdapterCheckpointLoadHook', 'CheckpointTypesHook',
    'enable_adapter_checkpoint_loading', 'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel', 'DatasetCheckHook', 'ParameterReportHook',
    'ModelRecordHook', 'NonFiniteLossHook',
    'RandomStateHook', 'BackboneLayerDecayOptimWrapperConstructor',
    'PolyLRWithWarmup', 'PolyParamWithWarmup', 'WarmupCosineAnnealingLR'
]
