from .amp import CPUAmpOptimWrapper
from .checkpoint_hook import (AdapterCheckpointHook, AdapterCheckpointLoadHook,
                              enable_adapter_checkpoint_loading)
from .dist import CPUDistributedDataParallel
from .hooks import NonFiniteLossHook, ParameterReportHook, RandomStateHook
from .layer_decay import BackboneLayerDecayOptimWrapperConstructor
from .param_schedulers import PolyLRWithWarmup, PolyParamWithWarmup

__all__ = [
    'AdapterCheckpointHook', 'AdapterCheckpointLoadHook',
    'enable_adapter_checkpoint_loading', 'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel', 'ParameterReportHook', 'NonFiniteLossHook',
    'RandomStateHook', 'BackboneLayerDecayOptimWrapperConstructor',
    'PolyLRWithWarmup', 'PolyParamWithWarmup'
]
