"""Reading the config text a checkpoint records, without running it.

mmengine's ``Config.fromstring(text, '.py')`` executes the text as Python,
so a config read from a checkpoint (``meta['cfg']``, the adapter record's
``config``) could run anything its author wrote. Checkpoints record the
config's ``pretty_text``: assignments of literals, lists, tuples, dicts and
``dict(...)`` calls. :func:`config_from_text` accepts exactly that (by the
syntax tree, evaluating nothing) and refuses the rest, naming the line.
"""
import ast
from typing import Any

from mmengine.config import Config


class ConfigTextError(ValueError):
    """A recorded config that is not plain data."""


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_value(n) for n in node.elts]
        return {ast.List: list, ast.Tuple: tuple,
                ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ConfigTextError('a ** expansion')
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == 'dict' and len(node.args) <= 1 and \
            all(isinstance(a, ast.Dict) for a in node.args) and \
            all(kw.arg is not None for kw in node.keywords):
        # dict(a=1) and, for keys that are not names, dict({'a b': 1})
        out = _value(node.args[0]) if node.args else {}
        out.update({kw.arg: _value(kw.value) for kw in node.keywords})
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(
            node.op, (ast.USub, ast.UAdd)) and isinstance(
                node.operand, ast.Constant) and isinstance(
                    node.operand.value, (int, float, complex)):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    raise ConfigTextError(ast.dump(node)[:60])


def config_dict_from_text(text: str) -> dict:
    """The top-level assignments of ``text`` as a dict of plain values."""
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise ConfigTextError(f'the recorded config is not Python '
                              f'({error.msg}, line {error.lineno})') from None
    out = {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):
            raise ConfigTextError(
                f'line {stmt.lineno} of the recorded config is not an '
                'assignment of plain values; a recorded config is read '
                'as data, never run')
        try:
            out[stmt.targets[0].id] = _value(stmt.value)
        except ConfigTextError as error:
            raise ConfigTextError(
                f'line {stmt.lineno} of the recorded config ('
                f'{stmt.targets[0].id} = ...) holds an expression ({error}) '
                'where plain data belongs; a recorded config is read as '
                'data, never run. Pass the config file yourself '
                '(--config)') from None
    return out


def config_from_text(text: str) -> Config:
    """A :class:`Config` of the recorded ``text``, evaluating nothing."""
    return Config(config_dict_from_text(text))
