"""Python APIs: named adapter sets from adapter-only checkpoints, and
several tasks served from one frozen backbone."""
from .adapter_sets import (
                           TaskCheckpoint,
                           check_adapter_set_checkpoint,
                           load_adapter_set,
                           read_task_checkpoint,
)
from .multitask import MultiTaskModel, init_task_model

__all__ = [
    'MultiTaskModel', 'TaskCheckpoint', 'check_adapter_set_checkpoint',
    'init_task_model', 'load_adapter_set', 'read_task_checkpoint'
]
