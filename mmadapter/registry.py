"""Registries of mmadapter.

``MODELS``, ``HOOKS``, ``DATASETS`` and the others are children of
mmengine's root registries with the scope ``mmadapter``, so configs of mmdet,
mmseg and mmpretrain (sibling scopes) can name
``type='mmadapter.AdapterSwinTransformer'`` once ``mmadapter`` is imported (for
example through ``custom_imports``).

``ADAPTERS`` holds the adapter methods (Mona, LoRA, ...). It is a registry of
its own because an adapter config is not a module config: one adapter config
builds many modules, one or more per transformer block.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
)
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmadapter',
    locations=['mmadapter.backbones', 'mmadapter.models'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmadapter',
    locations=['mmadapter.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='mmadapter',
    locations=['mmadapter.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='mmadapter',
    locations=['mmadapter.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
    scope='mmadapter', locations=['mmadapter.engine'])
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, scope='mmadapter',
    locations=['mmadapter.datasets'])
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, scope='mmadapter',
    locations=['mmadapter.evaluation'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mmadapter',
    locations=['mmadapter.engine'])
ADAPTERS = Registry('adapter', scope='mmadapter',
                    locations=['mmadapter.adapters'])
