"""``--cfg-options`` keys that the config does not have: most often a typo
(``model.backbone.adaptr.type=LoRA``) that would otherwise be merged
silently as a new, unused setting while the run trains with the old one."""
import difflib
import inspect
import warnings
from typing import Iterator, List, Optional

from mmengine.config import Config
from mmengine.runner import Runner

# top-level settings the Runner reads although most configs leave them out
RUNNER_KEYS = frozenset(inspect.signature(Runner.__init__).parameters) | {
    'runner_type', 'launcher', 'custom_imports', 'default_scope'}


class UnknownConfigKeyWarning(UserWarning):
    """A ``--cfg-options`` key that is not in the config."""


def key_paths(node, prefix: str = '') -> Iterator[str]:
    """Every key path of a config (list items as indices)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        path = f'{prefix}.{key}' if prefix else str(key)
        yield path
        yield from key_paths(value, path)


def missing_part(cfg: Config, key: str) -> Optional[str]:
    """The first part of ``key`` that does not exist in ``cfg`` (the path
    up to it); None when it exists, or when it would be set below a value
    that is not a dict (None: the option creates it)."""
    node, path = cfg._cfg_dict if isinstance(cfg, Config) else cfg, []
    for part in key.split('.'):
        path.append(part)
        if isinstance(node, dict):
            if part not in node:
                return '.'.join(path)
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit():
            if int(part) >= len(node):
                return '.'.join(path)
            node = node[int(part)]
        else:
            return None
    return None


def unknown_option_messages(cfg: Config, options: dict) -> List[str]:
    paths = None
    messages = []
    for key in options:
        missing = missing_part(cfg, key)
        if missing is None or missing.split('.')[0] in RUNNER_KEYS and \
                missing.count('.') == 0:
            continue
        if paths is None:
            paths = list(key_paths(cfg._cfg_dict))
        depth = missing.count('.')
        candidates = [p for p in paths if p.count('.') == depth]
        close = difflib.get_close_matches(missing, candidates, n=1,
                                          cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ''
        messages.append(
            f"--cfg-options {key}: the config has no key '{missing}'{hint} "
            'It is added as a new setting, which nothing may read.')
    return messages


def warn_unknown_options(cfg: Config, options: Optional[dict]) -> None:
    """Warn (:class:`UnknownConfigKeyWarning`) for every key of
    ``options`` that is not in ``cfg``, with the closest existing key."""
    for message in unknown_option_messages(cfg, options or {}):
        warnings.warn(message, UnknownConfigKeyWarning, stacklevel=3)
