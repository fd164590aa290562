"""Building models from configs outside a Runner (tools, tests)."""
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.utils import import_modules_from_strings


def build_model_without_weights(cfg: Config):
    """Build ``cfg.model`` in the config's default scope, applying its
    ``custom_imports``, without loading any pretrained weights (the tuning
    policy is applied at construction, so the trainable set is final)."""
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return MODELS.build(cfg.model)
