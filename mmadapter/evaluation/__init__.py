from .voc_metric import VOCMetric

__all__ = ['VOCMetric']
