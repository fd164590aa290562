from .amp import CPUAmpOptimWrapper
from .atomic_checkpoint import AtomicCheckpointHook, CheckpointWriteError
from .checkpoint_hook import (AdapterCheckpointHook, AdapterCheckpointLoadHook,
                              enable_adapter_checkpoint_loading)
from .dist import CPUDistributedDataParallel
from .hooks import NonFiniteLossHook, ParameterReportHook, RandomStateHook
from .layer_decay import BackboneLayerDecayOptimWrapperConstructor
from .param_schedulers import (PolyLRWithWarmup, PolyParamWithWarmup,
                               WarmupCosineAnnealingLR)

__all__ = [
    'AdapterCheckpointHook', 'AtomicCheckpointHook', 'CheckpointWriteError',
    'AdapterCheckpointLoadHook',
    'enable_adapter_checkpoint_loading', 'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel', 'ParameterReportHook', 'NonFiniteLossHook',
    'RandomStateHook', 'BackboneLayerDecayOptimWrapperConstructor',
    'PolyLRWithWarmup', 'PolyParamWithWarmup', 'WarmupCosineAnnealingLR'
]
