from .adaptformer import AdaptFormer
from .base import (
                   LINEAR_TARGETS,
                   SITES,
                   AdapterConfigError,
                   AdapterModule,
                   AdapterSpec,
                   build_adapter,
                   known_adapters,
)
from .bottleneck import BottleneckAdapter
from .houlsby import Houlsby
from .lora import LoRA, LoRALinear, LowRankDelta
from .lorand import LoRand, LoRandAdapter
from .mona import Mona, MonaModule, MonaOp

__all__ = [
    'SITES', 'LINEAR_TARGETS', 'AdapterConfigError', 'AdapterModule',
    'AdapterSpec', 'build_adapter', 'known_adapters', 'Mona', 'MonaModule',
    'MonaOp', 'Houlsby', 'AdaptFormer', 'BottleneckAdapter', 'LoRA',
    'LoRALinear', 'LowRankDelta', 'LoRand', 'LoRandAdapter'
]
