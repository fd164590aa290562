"""The table configs follow the official Mona runs where mmdet 3.3 / mmseg
1.2's stock bases differ (docs/official_recipes.md, "The three dense-prediction
settings"): VOC's frozen patch embedding, boxes of every size and IoUs without
the legacy +1; ADE20K's FP32 and mmcv 1.x poly schedule; the AdaptFormer and
Houlsby initialisations of the Mona code."""
import copy
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope

from conftest import tiny_swin
from e2e_utils import REPO, tool_env, toy_data
from mmadapter.adapters import build_adapter
from mmadapter.engine.amp import enable_amp

CONFIGS = osp.join(REPO, 'configs')
METHOD_DIRS = ('adaptformer', 'bitfit', 'fixed', 'full', 'houlsby', 'lora',
               'lorand', 'mona', 'normtuning', 'partial1')


def load(path):
    return Config.fromfile(osp.join(CONFIGS, path))


def requires_grad(module):
    return {n: p.requires_grad for n, p in module.named_parameters()}


# ------------------------------------------------- VOC: frozen patch embed
@pytest.mark.parametrize('tuning', ['full', 'bitfit', 'norm'])
def test_frozen_patch_embed_stays_frozen(tuning, tmp_path):
    """mmdet's frozen_stages=0 (Microsoft's 1) and the tuning policy compose:
    the patch embedding stays frozen after construction, init_weights,
    train() and loading weights, and a training step leaves it unchanged
    while the rest of the policy trains."""
    model = tiny_swin(tuning=tuning, frozen_stages=0)
    frozen = [n for n in requires_grad(model) if n.startswith('patch_embed')]
    assert frozen and not any(requires_grad(model)[n] for n in frozen)
    policy_only = tiny_swin(tuning=tuning)
    expected = {n: g and not n.startswith('patch_embed')
                for n, g in requires_grad(policy_only).items()}
    assert requires_grad(model) == expected

    model.init_weights()
    assert requires_grad(model) == expected
    model.train()
    assert requires_grad(model) == expected
    assert not model.patch_embed.training  # frozen parts stay in eval mode

    path = str(tmp_path / 'weights.pth')
    torch.save(tiny_swin().state_dict(), path)
    loaded = tiny_swin(tuning=tuning, frozen_stages=0,
                       init_cfg=dict(type='Pretrained', checkpoint=path))
    loaded.init_weights()
    loaded.train()
    assert requires_grad(loaded) == expected

    before = {n: p.detach().clone() for n, p in loaded.named_parameters()}
    optimizer = torch.optim.SGD(
        [p for p in loaded.parameters() if p.requires_grad], lr=0.1)
    sum(out.square().mean() for out in loaded(torch.randn(1, 3, 64, 64))) \
        .backward()
    optimizer.step()
    for name, param in loaded.named_parameters():
        changed = not torch.equal(param, before[name])
        if name.startswith('patch_embed'):
            assert not changed, name
    assert any(not torch.equal(p, before[n])
               for n, p in loaded.named_parameters() if expected[n])


def test_frozen_stage_keeps_its_adapters_frozen():
    """frozen_stages=1 also freezes stage 0, its adapters included."""
    model = tiny_swin(adapter=dict(type='Mona', bottleneck=8),
                      frozen_stages=1)
    model.init_weights()
    model.train()
    grads = requires_grad(model)
    assert not any(g for n, g in grads.items() if n.startswith('stages.0.'))
    assert any(g for n, g in grads.items()
               if n.startswith('stages.1.') and '.adapters.' in n)


@pytest.mark.parametrize('method', METHOD_DIRS)
def test_voc_configs_freeze_the_patch_embedding(method):
    assert load(f'{method}/retinanet_swin_l_voc.py') \
        .model.backbone.frozen_stages == 0


def test_count_params_reports_the_official_voc_full_count():
    """The command of issue 12's "done when"."""
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'analysis',
                                  'count_params.py'),
         osp.join(CONFIGS, 'full', 'retinanet_swin_l_voc.py')],
        cwd=REPO, env=tool_env(), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '194,987,988 of 194,997,780 backbone parameters train' in \
        proc.stdout, proc.stdout[-2000:]


# ---------------------------------------------- VOC: boxes of every size
def test_voc_trains_on_small_boxes(tmp_path):
    """A 10 px box is a training box, not an ignored one (mmdet 3.3's VOC
    base would ignore every box under 32 px)."""
    from mmdet.registry import DATASETS
    data = toy_data().make_voc(str(tmp_path), num_train=1, num_val=1,
                               img_size=(160, 128))
    xml = osp.join(data['root'], 'VOC2007', 'Annotations', '000001.xml')
    with open(xml) as f:
        text = f.read()
    small = ('<object><name>bird</name><difficult>0</difficult><bndbox>'
             '<xmin>5</xmin><ymin>5</ymin><xmax>14</xmax><ymax>14</ymax>'
             '</bndbox></object></annotation>')
    with open(xml, 'w') as f:
        f.write(text.replace('</annotation>', small))

    cfg = load('mona/retinanet_swin_l_voc.py')
    voc07 = copy.deepcopy(
        cfg.train_dataloader.dataset.dataset.datasets[0].to_dict())
    voc07.update(data_root=data['root'] + '/', pipeline=[])
    init_default_scope('mmdet')
    instances = DATASETS.build(voc07).get_data_info(0)['instances']
    boxes = {tuple(i['bbox']): i['ignore_flag'] for i in instances}
    assert boxes[(4.0, 4.0, 13.0, 13.0)] == 0
    assert all(flag == 0 for flag in boxes.values())

    stock = dict(voc07, filter_cfg=dict(voc07['filter_cfg'],
                                        bbox_min_size=32))
    flags = {tuple(i['bbox']): i['ignore_flag']
             for i in DATASETS.build(stock).get_data_info(0)['instances']}
    assert flags[(4.0, 4.0, 13.0, 13.0)] == 1  # what the stock base did


# ------------------------------------------ VOC: IoU without the legacy +1
def voc_metric(**kwargs):
    from mmdet.datasets import VOCDataset
    from mmdet.registry import METRICS
    init_default_scope('mmdet')
    metric = METRICS.build(dict(type='mmadapter.VOCMetric', metric='mAP',
                                eval_mode='11points', **kwargs))
    metric.dataset_meta = dict(VOCDataset.METAINFO, dataset_type='VOC')
    return metric


def one_detection_result(pred_box, gt_box):
    """A data sample with one ground-truth box and one detection (class 0)."""
    empty = dict(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
    return dict(
        gt_instances=dict(bboxes=torch.tensor([gt_box]),
                          labels=torch.tensor([0])),
        ignored_instances=empty,
        pred_instances=dict(bboxes=torch.tensor([pred_box]),
                            scores=torch.tensor([0.9]),
                            labels=torch.tensor([0])))


def voc_map(metric, pred_box, gt_box):
    metric.process({}, [one_detection_result(pred_box, gt_box)])
    return metric.evaluate(1)['pascal_voc/mAP']


def test_voc_metric_computes_ious_without_the_legacy_pixel():
    """gt (0, 0, 10, 10), detection (0, 0, 10, 4.6): IoU 0.46 as mmdet 2.11
    computed it (a miss at 0.5), 0.509 with the legacy +1 (a hit)."""
    pred, gt = [0., 0., 10., 4.6], [0., 0., 10., 10.]
    assert voc_map(voc_metric(), pred, gt) == 0.0
    assert voc_map(voc_metric(legacy_coordinate=True), pred, gt) == 1.0
    from mmdet.evaluation.metrics import VOCMetric
    stock = VOCMetric(metric='mAP', eval_mode='11points')
    stock.dataset_meta = voc_metric().dataset_meta
    assert voc_map(stock, pred, gt) == 1.0  # mmdet 3.3: legacy
    # the patch is undone: mmdet's own metric is unaffected afterwards
    assert voc_map(voc_metric(), pred, gt) == 0.0
    assert voc_map(stock, pred, gt) == 1.0


@pytest.mark.parametrize('method', METHOD_DIRS)
def test_voc_configs_score_as_the_official_runs(method):
    cfg = load(f'{method}/retinanet_swin_l_voc.py')
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator = {k: v for k, v in evaluator.items() if k != '_scope_'}
        assert evaluator == dict(type='mmadapter.VOCMetric', metric='mAP',
                                 eval_mode='11points',
                                 legacy_coordinate=False)


# ------------------------------------------------------------ ADE20K: FP32
@pytest.mark.parametrize('method', METHOD_DIRS)
def test_ade20k_trains_in_fp32_and_amp_turns_mixed_precision_on(method):
    cfg = load(f'{method}/upernet_swin_l_ade20k.py')
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    enable_amp(cfg)  # what tools/train.py --amp does
    expected = 'AmpOptimWrapper' if torch.cuda.is_available() else \
        'mmadapter.CPUAmpOptimWrapper'
    assert cfg.optim_wrapper.type == expected


# -------------------------------------------------- ADE20K: mmcv 1.x poly
def official_lr(base, t, total=160000, warmup=1500, ratio=1e-6):
    """mmcv 1.x PolyLrUpdaterHook (power 1, min_lr 0) with linear warm-up:
    the warm-up multiplies the poly value computed from iteration 0."""
    regular = base * (1 - t / total)
    if t < warmup:
        k = (1 - t / warmup) * (1 - ratio)
        return regular * (1 - k)
    return regular


def lr_curve(schedulers_cfg, base, steps):
    """The lr of each iteration in ``steps`` under ``schedulers_cfg``."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=base)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer))
                  for s in copy.deepcopy(schedulers_cfg)]
    lrs, wanted = {}, set(steps)
    for t in range(max(steps) + 1):
        if t in wanted:
            lrs[t] = optimizer.param_groups[0]['lr']
        for scheduler in schedulers:  # ParamSchedulerHook, after each iter
            scheduler.step()
    return lrs


STEPS = [0, 1, 100, 749, 1499, 1500, 1501, 10000, 80000, 159999]


@pytest.mark.parametrize('method,base', [('mona', 3e-4), ('full', 6e-5)])
def test_ade20k_lr_follows_the_mmcv_poly_curve(method, base):
    cfg = load(f'{method}/upernet_swin_l_ade20k.py')
    init_default_scope('mmseg')
    assert cfg.optim_wrapper.optimizer.lr == base
    lrs = lr_curve(cfg.param_scheduler, base, STEPS)
    for t in STEPS:
        assert lrs[t] == pytest.approx(official_lr(base, t), rel=1e-9,
                                       abs=1e-15), t


def test_stock_mmseg_schedule_differs_from_the_official_one():
    """Why the stock LinearLR + PolyLR(begin=1500) pair was replaced: its
    poly restarts at 1500: 1500 / 160000 = 0.94% of the base lr off there."""
    stock = [dict(type='LinearLR', start_factor=1e-6, by_epoch=False,
                  begin=0, end=1500),
             dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500,
                  end=160000, by_epoch=False)]
    lrs = lr_curve(stock, 1.0, [1500, 80000])
    assert lrs[1500] - official_lr(1.0, 1500) == pytest.approx(1500 / 160000)
    assert lrs[80000] != pytest.approx(official_lr(1.0, 80000), rel=1e-4)


# ------------------------------------- AdaptFormer and Houlsby table init
@pytest.mark.parametrize('method', ['adaptformer', 'houlsby'])
@pytest.mark.parametrize('setting', ['cascade_swin_b_coco',
                                     'retinanet_swin_l_voc',
                                     'upernet_swin_l_ade20k'])
def test_bottleneck_adapters_start_as_in_the_mona_code(method, setting):
    """The Mona code re-initialises every Linear (trunc_normal std 0.02,
    bias 0): the up projection starts non-zero."""
    spec = build_adapter(load(f'{method}/{setting}.py').model.backbone.adapter)
    torch.manual_seed(0)
    for module in spec.site_modules(512).values():
        for linear in (module.down_proj, module.up_proj):
            assert 0.018 < linear.weight.std().item() < 0.022
            assert linear.weight.abs().max().item() < 0.1
            assert torch.all(linear.bias == 0)


def test_adaptformer_keeps_the_original_zero_init_as_an_option():
    module = build_adapter(dict(type='AdaptFormer', init='lora')) \
        .site_modules(64)['ffn_parallel']
    assert torch.all(module.up_proj.weight == 0)
    assert torch.all(module(torch.randn(1, 4, 64)) == 0)
