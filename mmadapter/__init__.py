"""mmadapter: parameter-efficient tuning of Swin and ViT backbones for
OpenMMLab detection and segmentation."""
from .compat import patch_checkpoint_loading
from .version import __version__

patch_checkpoint_loading()

from . import (adapters, backbones, engine, evaluation,  # noqa: E402,F401
               models)
from .adapters import build_adapter, known_adapters  # noqa: E402
from .tuning import POLICIES  # noqa: E402

__all__ = ['__version__', 'build_adapter', 'known_adapters', 'POLICIES']
