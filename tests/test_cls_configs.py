"""The classification configs (the Mona paper's third table): every method x
dataset config builds, trains exactly the analytic backbone count of its
method (Swin-L, out_indices (3,)) plus the whole head, and states the
official recipe; the toy configs shrink the Mona ones and nothing else."""
import copy
import functools
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from mmadapter.cli.build import build_model_without_weights
from swin_counts import ARCHS, expected_trainable, swin_total
from test_configs import METHODS

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
SWIN_L = ARCHS['swin-l']
OUT_INDICES = (3, )
BASE_LR = 5e-4 * 16 / 512

#: dataset setting -> (dataset type, data root, splits, classes)
DATASETS = {
    'flowers102': ('Flowers102', 'data/flowers102', ('trainval', 'test'),
                   102),
    'pets': ('OxfordIIITPet', 'data/oxford_pets', ('trainval', 'test'), 37),
    'voc2007': ('mmadapter.VOCSingleLabel', 'data/VOCdevkit/VOC2007',
                ('trainval', 'test'), 20),
}
CONFIGS = [(m, d) for m in METHODS for d in DATASETS]
TOYS = {'swin_toy_flowers102': 'flowers102', 'swin_toy_pets': 'pets',
        'swin_toy_voc2007': 'voc2007'}
TOY_ARCH = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))


@functools.lru_cache(maxsize=None)
def load(relative_path: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / relative_path))


def build_without_weights(cfg: Config):
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.init_cfg = None
    return build_model_without_weights(cfg)


def plain(cfg_dict) -> dict:
    """A config dict without the ``_scope_`` that stock bases add."""
    return {k: v for k, v in cfg_dict.items() if k != '_scope_'}


def trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def expected_lr(method: str, dataset: str) -> float:
    return 2 * BASE_LR if method == 'mona' and dataset != 'voc2007' \
        else BASE_LR


@pytest.fixture
def amp_on_cpu(monkeypatch):
    if not torch.cuda.is_available():
        monkeypatch.setattr(
            'mmengine.optim.optimizer.amp_optimizer_wrapper.'
            'is_cuda_available', lambda: True)


def check_optimizer(model, cfg, lr):
    """Every trainable parameter is optimised at ``lr``; norms, biases and
    position tables get no weight decay, everything else 0.05 (Mona's
    gammas included: mmcls 0.25 had no flat_decay_mult)."""
    optim_wrapper = build_optim_wrapper(model,
                                        copy.deepcopy(cfg.optim_wrapper))
    names = {p: n for n, p in model.named_parameters()}
    norms = {f'{prefix}.{n}' if prefix else n
             for prefix, module in model.named_modules()
             if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm))
             for n, _ in module.named_parameters(recurse=False)}
    seen = set()
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            if not param.requires_grad:
                continue
            name = names[param]
            seen.add(name)
            assert group['lr'] == pytest.approx(lr), name
            no_decay = name in norms or name.endswith('.bias') or \
                'relative_position_bias_table' in name or \
                'absolute_pos_embed' in name
            assert group['weight_decay'] == (0.0 if no_decay else 0.05), name
    assert seen == {n for n, p in model.named_parameters()
                    if p.requires_grad}
    return optim_wrapper


# ------------------------------------------------ method x dataset configs
@pytest.mark.parametrize('method,dataset', CONFIGS)
def test_config_builds_and_trains_the_right_parameters(method, dataset,
                                                       amp_on_cpu):
    cfg = load(f'{method}/swin_l_{dataset}.py')
    name, adapter, tuning = METHODS[method]
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.backbone.get('adapter') == adapter
    assert cfg.model.backbone.tuning == tuning
    # (METHODS is what test_configs.py asserts of the folder's detection
    # and segmentation configs: the same method everywhere)

    model = build_without_weights(cfg)
    assert type(model).__name__ == 'ImageClassifier'
    backbone = model.backbone
    assert type(backbone).__name__ == 'AdapterSwinTransformer'
    assert trainable(backbone) == expected_trainable(name, SWIN_L,
                                                     OUT_INDICES)
    adapter_params = expected_trainable(name, SWIN_L) if adapter else 0
    assert sum(p.numel() for p in backbone.parameters()) == \
        swin_total(SWIN_L, OUT_INDICES) + adapter_params
    # only the last stage's output norm exists; it trains with Full,
    # BitFit and NormTuning, and stays frozen for the adapters/Partial-1
    assert [n for n, _ in backbone.named_children() if n.startswith('norm')
            ] == ['norm3']
    assert backbone.norm3.weight.requires_grad == (
        name in ('Full', 'NormTuning'))
    num_classes = DATASETS[dataset][3]
    head = model.head
    assert trainable(head) == sum(p.numel() for p in head.parameters()) == \
        1536 * num_classes + num_classes
    assert trainable(model) == trainable(backbone) + trainable(head)

    optim_wrapper = check_optimizer(model, cfg, expected_lr(method, dataset))
    assert type(optim_wrapper).__name__ == 'AmpOptimWrapper'


@pytest.mark.parametrize('method,dataset', CONFIGS)
def test_config_differs_from_mona_only_in_the_method(method, dataset):
    flat = {}
    for name in (method, 'mona'):
        cfg = load(f'{name}/swin_l_{dataset}.py').to_dict()
        backbone = cfg['model']['backbone']
        backbone.pop('adapter', None), backbone.pop('tuning')
        cfg['optim_wrapper']['optimizer'].pop('lr')
        cfg.pop('method')
        flat[name] = cfg
    assert flat[method] == flat['mona']


# ------------------------------------------------------- the shared recipe
@pytest.mark.parametrize('dataset', DATASETS)
def test_dataset_settings(dataset):
    cfg = load(f'_base_/swin_l_{dataset}.py')
    dataset_type, root, (train_split, test_split), classes = \
        DATASETS[dataset]
    assert cfg.model.head.num_classes == classes
    assert cfg.data_preprocessor.num_classes == classes
    assert cfg.data_preprocessor.get('to_onehot', False) is False
    assert cfg.data_root == root
    for loader, split in (('train_dataloader', train_split),
                          ('val_dataloader', test_split),
                          ('test_dataloader', test_split)):
        data = cfg[loader].dataset
        assert (data.type, data.data_root, data.split) == (dataset_type, root,
                                                           split)
        assert cfg[loader].batch_size == 4
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert (evaluator.type, tuple(evaluator.topk)) == ('Accuracy', (1, 5))


def test_classification_recipe():
    cfg = load('_base_/swin_l_classification.py')
    assert cfg.custom_imports == dict(imports=['mmadapter'],
                                      allow_failed_imports=False)
    assert [h.type for h in cfg.custom_hooks] == [
        'mmadapter.ParameterReportHook', 'mmadapter.NonFiniteLossHook',
        'mmadapter.RandomStateHook', 'mmadapter.DatasetCheckHook',
        'mmadapter.CheckpointTypesHook'
    ]
    model = cfg.model
    assert model.type == 'ImageClassifier'
    assert model.get('train_cfg') is None  # no mixup / cutmix
    backbone = model.backbone
    assert backbone.type == 'mmadapter.AdapterSwinTransformer'
    for key, value in SWIN_L.items():
        assert tuple(backbone[key]) == value if isinstance(value, tuple) \
            else backbone[key] == value
    assert (backbone.window_size, backbone.pretrain_img_size,
            backbone.drop_path_rate, tuple(backbone.out_indices),
            backbone.load_final_norm) == (7, 224, 0.3, OUT_INDICES, True)
    assert backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint='data/pretrained/swin_large_patch4_window7_224_22k.pth')
    assert plain(model.neck) == dict(type='GlobalAveragePooling')
    head = model.head
    assert (head.type, head.in_channels, tuple(head.topk)) == (
        'LinearClsHead', 1536, (1, 5))
    assert head.loss == dict(type='CrossEntropyLoss', loss_weight=1.0)
    assert head.init_cfg == dict(type='Normal', layer='Linear', std=0.01)

    assert [(t.type, t.get('scale'), t.get('prob'))
            for t in cfg.train_pipeline] == [
        ('LoadImageFromFile', None, None), ('RandomResizedCrop', 224, None),
        ('RandomFlip', None, 0.5), ('PackInputs', None, None)]
    assert [(t.type, t.get('scale'), t.get('edge'), t.get('crop_size'))
            for t in cfg.test_pipeline] == [
        ('LoadImageFromFile', None, None, None),
        ('ResizeEdge', 256, 'short', None),
        ('CenterCrop', None, None, 224), ('PackInputs', None, None, None)]
    assert cfg.train_dataloader.batch_size == 4
    assert plain(cfg.auto_scale_lr) == dict(enable=False, base_batch_size=16)

    optim = cfg.optim_wrapper
    assert (optim.type, optim.loss_scale) == ('AmpOptimWrapper', 'dynamic')
    assert plain(optim.clip_grad) == dict(max_norm=5.0)
    assert plain(optim.optimizer) == dict(type='AdamW', lr=1.5625e-5,
                                   weight_decay=0.05, eps=1e-8,
                                   betas=(0.9, 0.999))
    assert 'flat_decay_mult' not in optim.paramwise_cfg
    (scheduler, ) = cfg.param_scheduler
    assert plain(scheduler) == dict(
        type='mmadapter.WarmupCosineAnnealingLR', warmup_end=20,
        warmup_ratio=1e-3, eta_min_ratio=1e-2, by_epoch=True, begin=0,
        end=100, convert_to_iter_based=True)
    assert plain(cfg.train_cfg) == dict(by_epoch=True, max_epochs=100,
                                 val_interval=1)


def test_multilabel_voc_config():
    cfg = load('mona/swin_l_voc2007_multilabel.py')
    assert cfg.model.backbone.adapter == dict(type='Mona', bottleneck=64)
    head = cfg.model.head
    assert (head.type, head.num_classes, head.loss.use_sigmoid) == (
        'MultiLabelLinearClsHead', 20, True)
    assert cfg.data_preprocessor.to_onehot is True
    for loader in ('train_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.type == 'VOC'
    assert 'gt_label_difficult' in \
        cfg.test_dataloader.dataset.pipeline[-1].meta_keys
    assert [m.type for m in cfg.test_evaluator] == [
        'VOCMultiLabelMetric', 'VOCMultiLabelMetric', 'VOCAveragePrecision']
    model = build_without_weights(cfg)
    assert trainable(model.backbone) == expected_trainable('Mona', SWIN_L)


# --------------------------------------------------------------- toy configs
@pytest.mark.parametrize('toy', TOYS)
def test_toy_config_shrinks_the_mona_config(toy):
    cfg = load(f'toy/{toy}.py')
    real = load(f'mona/swin_l_{TOYS[toy]}.py')
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.backbone.adapter == real.model.backbone.adapter
    assert tuple(cfg.model.backbone.out_indices) == OUT_INDICES
    model = build_without_weights(cfg)
    assert trainable(model.backbone) == expected_trainable(
        'Mona', TOY_ARCH, OUT_INDICES)
    assert model.head.fc.in_features == 256
    for key in ('type', 'num_classes', 'topk', 'loss'):
        assert cfg.model.head[key] == real.model.head[key]
    assert cfg.model.neck == real.model.neck
    for split in ('train', 'test'):
        toy_data, real_data = (c[f'{split}_dataloader'].dataset
                               for c in (cfg, real))
        assert (toy_data.type, toy_data.split) == (real_data.type,
                                                   real_data.split)
        assert [t.type for t in toy_data.pipeline] == \
            [t.type for t in real_data.pipeline]
        assert toy_data.data_root == cfg.data_root
        assert cfg.data_root.startswith('data/toy/')
    assert cfg.test_evaluator == real.test_evaluator
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # fp32 on the CPU
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.default_hooks.checkpoint.interval == cfg.train_cfg.max_iters
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


# ------------------------------------------------------------ the schedule
def mmcv1_cosine_with_warmup(base, step, total, warmup, ratio=1e-3,
                             min_ratio=1e-2):
    """mmcv 1.x: CosineAnnealingLrUpdaterHook(by_epoch=False,
    min_lr_ratio) with warmup='linear' as a factor on it."""
    target = base * min_ratio
    regular = target + 0.5 * (base - target) * (
        math.cos(math.pi * step / total) + 1)
    if step >= warmup:
        return regular
    k = (1 - step / warmup) * (1 - ratio)
    return regular * (1 - k)


def test_scheduler_follows_mmcv1_per_iteration():
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = load('mona/swin_l_flowers102.py')
    epoch_length, lr = 7, cfg.optim_wrapper.optimizer.lr
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=lr)
    scheduler_cfg = dict(cfg.param_scheduler[0])
    scheduler_cfg.pop('convert_to_iter_based')
    scheduler_cls = PARAM_SCHEDULERS.get(scheduler_cfg.pop('type'))
    scheduler = scheduler_cls.build_iter_from_epoch(
        optimizer, **scheduler_cfg, epoch_length=epoch_length)
    total, warmup = 100 * epoch_length, 20 * epoch_length
    seen = []
    for step in range(total):
        seen.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    expected = [mmcv1_cosine_with_warmup(lr, t, total, warmup)
                for t in range(total)]
    assert seen == pytest.approx(expected, rel=1e-9)
    assert seen[0] == pytest.approx(lr * 1e-3)
    # at the end of the warm-up the cosine has already run a fifth of its
    # course (mmengine's LinearLR + CosineAnnealingLR(begin=20) is at 1.0)
    assert seen[warmup] / lr == pytest.approx(
        0.01 + 0.99 * (1 + math.cos(math.pi / 5)) / 2)
    assert seen[-1] / lr == pytest.approx(0.01, abs=1e-4)
