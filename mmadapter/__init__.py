"""mmadapter: parameter-efficient tuning of Swin and ViT backbones for
OpenMMLab detection, segmentation and classification.

Importing it registers its modules and changes nothing else in the process:
checkpoint loads stay weights-only (:mod:`mmadapter.checkpoint.safe_load`),
and the dataset checks are switched on by tools/train.py, tools/test.py or
``DatasetCheckHook``, not by the import.
"""
from .version import __version__

# checkpoint first: its records need the backbones, whose pretrained loading
# needs checkpoint.safe_load, imported before anything else in the package
from . import checkpoint  # noqa: E402,F401,I100
from . import (adapters, backbones, datasets, engine,  # noqa: E402,F401
               evaluation, models)
from .adapters import build_adapter, known_adapters  # noqa: E402
from .tuning import POLICIES  # noqa: E402

__all__ = ['__version__', 'build_adapter', 'known_adapters', 'POLICIES']
