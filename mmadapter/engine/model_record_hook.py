"""Records in every checkpoint the model configuration it was written for
(:mod:`mmadapter.checkpoint.model_record`), so that ``--resume``,
``load_from`` and tools/test.py can refuse another run's checkpoint before
loading it. tools/train.py adds it to every run; in a config of the stock
tools: ``custom_hooks = [dict(type='mmadapter.ModelRecordHook')]``.
"""
from mmengine.config import Config
from mmengine.hooks import Hook

from mmadapter.checkpoint.model_record import MODEL_RECORD_KEY, model_record
from mmadapter.registry import HOOKS


@HOOKS.register_module()
class ModelRecordHook(Hook):
    """Writes ``meta['model_config']``: adapter method and options, tuning
    policy, backbone architecture, model type, heads' ``num_classes``."""

    priority = 'VERY_LOW'  # after the hooks that reduce the checkpoint

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[MODEL_RECORD_KEY] = model_record(
            runner.cfg.get('model'))


def record_model_config(cfg: Config) -> Config:
    """Add :class:`ModelRecordHook` to ``cfg`` unless it has it. Returns
    ``cfg``, changed in place."""
    hooks = list(cfg.get('custom_hooks') or [])
    names = {str(getattr(h.get('type'), '__name__', h.get('type'))
                 ).split('.')[-1] for h in hooks}
    if 'ModelRecordHook' not in names:
        hooks.append(dict(type='mmadapter.ModelRecordHook'))
        cfg.custom_hooks = hooks
    return cfg
