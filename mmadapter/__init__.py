"""mmadapter: parameter-efficient tuning of Swin and ViT backbones for
OpenMMLab detection, segmentation and classification."""
from .compat import patch_checkpoint_loading
from .version import __version__

patch_checkpoint_loading()

from . import (adapters, backbones, datasets, engine,  # noqa: E402,F401
               evaluation, models)
from .adapters import build_adapter, known_adapters  # noqa: E402
from .tuning import POLICIES  # noqa: E402

from .datasets.checks import install as _install_dataset_checks  # noqa

_install_dataset_checks()  # datasets name their problems when built

__all__ = ['__version__', 'build_adapter', 'known_adapters', 'POLICIES']
