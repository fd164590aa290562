"""Checks of an mmadapter backbone config made before the Runner is built,
so that a mistake is reported as one clear line, not as a traceback from
inside mmengine's registry after minutes of setting up."""
import os.path as osp

from mmengine.config import Config

from mmadapter.adapters.base import build_adapter
from mmadapter.checkpoint.records import init_cfg_checkpoint
from mmadapter.tuning import normalize_policy


def check_backbone_config(cfg: Config, check_pretrained: bool = True) -> None:
    """Validate ``model.backbone`` when it is an mmadapter backbone: the
    adapter and its options, the tuning policy, and (``check_pretrained``)
    that a pretrained checkpoint file exists. Raises ``AdapterConfigError``
    (a ValueError) or ``FileNotFoundError``."""
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    if not str(backbone.get('type', '')).startswith('mmadapter.'):
        return
    adapter = build_adapter(backbone.get('adapter'))
    normalize_policy(backbone.get('tuning'), adapter is not None)
    path = init_cfg_checkpoint(backbone.get('init_cfg'))
    if check_pretrained and path and '://' not in path and \
            not osp.isfile(path):
        raise FileNotFoundError(
            f'Pretrained backbone checkpoint {path!r} does not exist. '
            'Download it as described in the README ("Pretrained weights") '
            'or set model.backbone.init_cfg.checkpoint.')
