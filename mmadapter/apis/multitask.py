"""Several tasks from one frozen backbone: one base checkpoint, one backbone
instance in memory, and per task an adapter-only checkpoint (adapters +
neck + head) served as a named adapter set::

    from mmadapter.apis import MultiTaskModel
    base = 'data/pretrained/swin_large_patch4_window7_224_22k.pth'
    tasks = MultiTaskModel(base, dict(voc='work_dirs/voc/iter_600.pth',
                                      ade='work_dirs/ade/iter_160000.pth'))
    results = tasks.predict_all('demo.jpg')   # {'voc': DetDataSample, ...}
    tasks.draw('demo.jpg', results, 'vis/')

Each task model is the stock mmdet / mmseg model of its config, built by
``mmdet.apis.init_detector`` / ``mmseg.apis.init_model`` around a
:class:`~mmadapter.backbones.TaskBackbone`, and run by the stock
``inference_detector`` / ``inference_model``; its predictions are those of
the standalone model (:func:`init_task_model`).
"""
import copy
import inspect
import os.path as osp
from typing import Dict, List, Optional, Union

import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger, print_log
from mmengine.registry import MODELS

from mmadapter.checkpoint import load_adapter_checkpoint
from mmadapter.insertion import AdapterSetError
from .adapter_sets import (
    TaskCheckpoint,
    load_adapter_set,
    read_task_checkpoint,
)
from .toolboxes import Toolbox, toolbox_of

ImageArg = Union[str, object, List]


def _stock_out_indices(backbone_cfg: dict, backbone_cls: type) -> List[int]:
    if 'out_indices' in backbone_cfg:
        return list(backbone_cfg['out_indices'])
    for cls in backbone_cls.__mro__:
        init = cls.__dict__.get('__init__')
        if init is not None:
            param = inspect.signature(init).parameters.get('out_indices')
            if param is not None and param.default is not param.empty:
                default = param.default
                return list(default) if isinstance(default, (list, tuple)) \
                    else [default]
    raise AdapterSetError(f'Cannot tell the out_indices of {backbone_cfg}.')


def shared_backbone_config(tasks: Dict[str, TaskCheckpoint],
                           base: str) -> dict:
    """The config of the backbone the tasks share: the first task's
    backbone, without adapter (sets are added per task), ``tuning='fixed'``,
    the union of the tasks' ``out_indices``, and ``base`` as its
    pretrained weights."""
    first = next(iter(tasks.values()))
    cfg = copy.deepcopy(dict(first.backbone_cfg))
    backbone_cls = MODELS.get(cfg['type'])
    indices = sorted({i for task in tasks.values()
                      for i in _stock_out_indices(task.backbone_cfg,
                                                  backbone_cls)})
    cfg.update(adapter=None, tuning='fixed', out_indices=tuple(indices),
               init_cfg=dict(type='Pretrained', checkpoint=base))
    return cfg


def build_shared_backbone(tasks: Dict[str, TaskCheckpoint], base: str,
                          device: str = 'cpu') -> nn.Module:
    """The shared backbone with the base weights loaded (the same reading
    and conversion as a standalone model's ``init_cfg``) and one adapter set
    per task, each checked against the base and the architecture."""
    backbone = MODELS.build(shared_backbone_config(tasks, base))
    backbone.init_weights()
    for name, task in tasks.items():
        load_adapter_set(backbone, name, task)
    return backbone.to(device).eval()


def task_config(task: TaskCheckpoint, name: str, out_indices) -> Config:
    """The task's config with a :class:`TaskBackbone` for its backbone."""
    cfg = copy.deepcopy(task.config)
    if task.prefix != 'backbone':
        raise AdapterSetError(
            f'{task.path}: its adapter backbone is model.{task.prefix}; '
            'multi-task serving supports model.backbone.')
    cfg.model.backbone = dict(type='mmadapter.TaskBackbone',
                              adapter_set=name,
                              out_indices=list(out_indices))
    return cfg


def load_task_head(model: nn.Module, task: TaskCheckpoint) -> None:
    """Load everything outside the backbone (neck, heads) strictly, and
    the dataset meta the run saved."""
    state = task.task_state()
    own = {k for k in model.state_dict() if not k.startswith('backbone.')}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise AdapterSetError(
            f'{task.path} does not fit the neck and heads of its config: '
            f'missing {missing[:5]}, unexpected {unexpected[:5]}.')
    model.load_state_dict(state, strict=False)
    meta = task.checkpoint.get('meta') or {}
    if meta.get('dataset_meta'):
        model.dataset_meta = copy.deepcopy(meta['dataset_meta'])


class MultiTaskModel:
    """One backbone in memory, several tasks.

    Args:
        base: the base checkpoint every task was trained on (checked by
            sha256 against each task's record).
        tasks: task name -> adapter-only checkpoint (as
            ``AdapterCheckpointHook`` saves them).
        configs: task name -> config file overriding the recorded config.
        device: where to run.
    """

    def __init__(self, base: str, tasks: Dict[str, str],
                 configs: Optional[Dict[str, str]] = None,
                 device: str = 'cpu'):
        if not tasks:
            raise AdapterSetError('MultiTaskModel needs at least one task.')
        configs = configs or {}
        # the files' tensors are copied into the models and then let go
        checkpoints: Dict[str, TaskCheckpoint] = {
            name: read_task_checkpoint(path, configs.get(name))
            for name, path in tasks.items()}
        self.configs: Dict[str, Config] = {
            name: task.config for name, task in checkpoints.items()}
        self.toolboxes: Dict[str, Toolbox] = {
            name: toolbox_of(cfg) for name, cfg in self.configs.items()}
        self.backbone = build_shared_backbone(checkpoints, base, device)
        self.models: Dict[str, nn.Module] = {}
        for name, task in checkpoints.items():
            out_indices = _stock_out_indices(task.backbone_cfg,
                                             type(self.backbone))
            model = self.toolboxes[name].init_model(
                task_config(task, name, out_indices), device)
            load_task_head(model, task)
            model.backbone.attach(self.backbone)
            self.models[name] = model.eval()
            task.checkpoint.clear()
        print_log(self.summary(), logger=MMLogger.get_current_instance())

    def summary(self) -> str:
        frozen = sum(p.numel() for p in self.backbone.parameters()
                     if not p.requires_grad)
        sets = ', '.join(
            f'{name} ({type(s.spec).__name__}, {s.num_parameters():,})'
            for name, s in self.backbone.adapter_sets.items())
        return (f'One {type(self.backbone).__name__} '
                f'({frozen:,} frozen parameters) serves {len(self.models)} '
                f'tasks; adapter sets: {sets}.')

    def predict(self, task: str, images: ImageArg):
        """The task's stock inference on ``images`` (its set is activated
        by the task model's backbone)."""
        if task not in self.models:
            raise AdapterSetError(
                f'No task named {task!r}; loaded tasks: {list(self.models)}.')
        return self.toolboxes[task].inference(self.models[task], images)

    def predict_all(self, images: ImageArg) -> Dict[str, object]:
        return {name: self.predict(name, images) for name in self.models}

    def draw(self, images: Union[str, List[str]], results: Dict[str, object],
             out_dir: str, score_thr: float = 0.3) -> List[str]:
        """Write each task's results on its image(s) as the stock visualiser
        draws them: ``out_dir/<task>/<image name>``. Returns the files."""
        import mmcv
        paths = [images] if isinstance(images, str) else list(images)
        written = []
        for name, result in results.items():
            per_image = result if isinstance(result, list) else [result]
            for path, sample in zip(paths, per_image):
                out_file = osp.join(out_dir, name, osp.basename(path))
                self.toolboxes[name].draw(self.models[name],
                                      mmcv.imread(path, channel_order='rgb'),
                                      sample, out_file, score_thr)
                written.append(out_file)
        return written


def init_task_model(checkpoint: str, config=None, device: str = 'cpu',
                    base: Optional[str] = None) -> nn.Module:
    """One task as a standalone model (its own backbone): the stock
    ``init_detector`` / ``init_model`` build, then base + adapter-only
    checkpoint loaded in one call (what :class:`MultiTaskModel` is
    compared with)."""
    task = read_task_checkpoint(checkpoint, config)
    model = toolbox_of(task.config).init_model(copy.deepcopy(task.config),
                                            'cpu')
    loaded = load_adapter_checkpoint(model, checkpoint, base=base)
    meta = loaded.get('meta') or {}
    if meta.get('dataset_meta'):
        model.dataset_meta = copy.deepcopy(meta['dataset_meta'])
    return model.to(device).eval()

