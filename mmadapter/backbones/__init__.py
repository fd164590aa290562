from .swin import AdaptedSwinBlock, AdapterSwinTransformer

__all__ = ['AdapterSwinTransformer', 'AdaptedSwinBlock']
