from .voc_single_label import VOCSingleLabel

__all__ = ['VOCSingleLabel']
