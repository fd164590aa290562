from .swin import AdaptedSwinBlock, AdapterSwinTransformer
from .task_backbone import TaskBackbone
from .vit import AdaptedViTLayer, AdapterViT

__all__ = [
    'AdapterSwinTransformer', 'AdaptedSwinBlock', 'AdapterViT',
    'AdaptedViTLayer', 'TaskBackbone'
]
