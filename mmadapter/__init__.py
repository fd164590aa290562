"""mmadapter: parameter-efficient tuning of Swin and ViT backbones for
OpenMMLab detection, segmentation and classification.

Importing it registers its modules and changes nothing else in the process:
checkpoint loads stay weights-only (:mod:`mmadapter.safe_load`),
and the dataset checks are switched on by tools/train.py, tools/test.py or
``DatasetCheckHook``, not by the import.
"""
from . import (  # noqa: F401
               adapters,
               backbones,
               checkpoint,
               datasets,
               engine,
               evaluation,
               models,
)
from .adapters import build_adapter, known_adapters
from .tuning import POLICIES
from .version import __version__

__all__ = ['__version__', 'build_adapter', 'known_adapters', 'POLICIES']
