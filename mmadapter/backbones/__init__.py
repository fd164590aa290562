from .shared import TaskBackbone
from .swin import AdaptedSwinBlock, AdapterSwinTransformer
from .vit import AdaptedViTLayer, AdapterViT

__all__ = [
    'AdapterSwinTransformer', 'AdaptedSwinBlock', 'AdapterViT',
    'AdaptedViTLayer', 'TaskBackbone'
]
