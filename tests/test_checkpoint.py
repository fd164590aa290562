"""Adapter-only checkpoints: what they hold, loading them back on top of the
base (also where init_weights never runs), the base's identity, LoRA
folding, and mmengine runs that save, resume and test with them."""
import copy
import hashlib
import os.path as osp
import shutil

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from conftest import TINY_SWIN
from mmadapter.backbones.pretrained import CheckpointMismatchError
from mmadapter.checkpoint import (
    ADAPTER_META_KEY,
    AdapterCheckpointError,
    BaseCheckpointWarning,
    adapter_state_keys,
    fold_lora,
    load_adapter_checkpoint,
    save_adapter_checkpoint,
)
from mmadapter.safe_load import load_file
from tiny_detectors import (
    LORA,
    MONA,
    assert_same_outputs,
    build,
    config,
    retinanet_cfg,
    trained,
    write_base,
)


@pytest.fixture
def base(tmp_path):
    return write_base(tmp_path / 'base.pth')


def expected_keys(model):
    """Trained parameters, plus every buffer outside the backbone."""
    state = model.state_dict()
    trained_params = {n for n, p in model.named_parameters()
                      if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()
               if n in state and not n.startswith('backbone.')}
    return trained_params | buffers


def test_adapter_checkpoint_holds_trained_params_buffers_config_and_hash(
        tmp_path, base):
    model = trained(retinanet_cfg(base))
    path = tmp_path / 'adapter.pth'
    save_adapter_checkpoint(model, str(path), config=config(
        retinanet_cfg(base)))
    saved = load_file(path)
    keys = set(saved['state_dict'])
    assert keys == expected_keys(model)
    bn_stats = {k for k in keys if k.endswith(('running_mean', 'running_var',
                                               'num_batches_tracked'))}
    assert bn_stats and all(k.startswith('bbox_head.') for k in bn_stats)
    assert not any(k.startswith('backbone.') and '.adapters.' not in k
                   for k in keys)
    record = saved['meta'][ADAPTER_META_KEY]
    with open(base, 'rb') as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    assert record['bases'] == {'backbone': dict(checkpoint=base, sha256=sha256,
                                                source='init_cfg',
                                                frozen_not_in_base=[])}
    assert "type='mmadapter.AdapterSwinTransformer'" in record['config']
    assert osp.getsize(path) < 0.5 * osp.getsize(base)


def test_backbone_params_the_policy_trains_are_kept(base):
    model = build(retinanet_cfg(base, adapter=None, tuning='bitfit'))
    keys = adapter_state_keys(model)
    table = ('backbone.stages.0.blocks.0.attn.w_msa.'
             'relative_position_bias_table')
    assert table in keys and 'backbone.stages.0.blocks.0.norm1.bias' in keys
    assert 'backbone.stages.0.blocks.0.norm1.weight' not in keys
    # the buffer of a module with a trained parameter goes with it
    assert table.replace('bias_table', 'index') in keys
    assert set(keys) == expected_keys(model) | {
        k for k in model.state_dict() if k.endswith('relative_position_index')}


def test_base_plus_adapter_reproduces_the_model_without_init_weights(
        tmp_path, base):
    model = trained(retinanet_cfg(base))
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path)
    fresh = build(retinanet_cfg(base))  # random backbone, as in Runner.test
    load_adapter_checkpoint(fresh, path)
    assert_same_outputs(model, fresh)
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_moved_base_is_found_through_the_config(tmp_path, base):
    model = trained(retinanet_cfg(base))
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path)
    moved = tmp_path / 'elsewhere.pth'
    shutil.move(base, moved)
    fresh = build(retinanet_cfg(moved))
    load_adapter_checkpoint(fresh, path)
    assert_same_outputs(model, fresh)
    with pytest.raises(FileNotFoundError, match='Base .* not found'):
        load_adapter_checkpoint(build(retinanet_cfg(base)), path)


def test_changed_base_warns(tmp_path, base):
    model = trained(retinanet_cfg(base))
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path)
    other = write_base(tmp_path / 'other.pth', seed=5)
    with pytest.warns(BaseCheckpointWarning, match='not the one the adapters'):
        load_adapter_checkpoint(build(retinanet_cfg(base)), path, base=other)


def test_base_with_other_keys_errors(tmp_path, base):
    model = trained(retinanet_cfg(base))
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path)
    state = load_file(base)['state_dict']
    partial = {k: v for k, v in state.items() if '.stages.3.' not in k}
    torch.save({'state_dict': partial}, tmp_path / 'partial.pth')
    with pytest.warns(BaseCheckpointWarning), \
            pytest.raises(CheckpointMismatchError,
                          match='frozen backbone parameters are not in it'):
        load_adapter_checkpoint(build(retinanet_cfg(base)), path,
                                base=str(tmp_path / 'partial.pth'))


def test_adapter_checkpoint_of_another_config_errors(tmp_path, base):
    model = trained(retinanet_cfg(base))
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path)
    other = build(retinanet_cfg(base, adapter=LORA))
    with pytest.raises(CheckpointMismatchError, match='another config'):
        load_adapter_checkpoint(other, path)


def test_backbone_without_base_cannot_save_adapter_only(tmp_path, base):
    cfg = retinanet_cfg(base)
    cfg['backbone']['init_cfg'] = None
    with pytest.raises(AdapterCheckpointError, match='no pretrained base'):
        save_adapter_checkpoint(build(cfg), str(tmp_path / 'a.pth'))


def test_folded_lora_in_stock_swin_matches_unmerged_model(base):
    from mmdet.models.backbones import SwinTransformer
    model = trained(retinanet_cfg(base, adapter=LORA))
    state, stock_cfg = fold_lora(copy.deepcopy(model),
                                 config(retinanet_cfg(base, adapter=LORA)))
    assert not any('lora' in k for k in state)
    assert stock_cfg.model.backbone.type == 'mmdet.SwinTransformer'
    assert 'adapter' not in stock_cfg.model.backbone
    stock = build(stock_cfg.model)
    assert isinstance(stock.backbone, SwinTransformer)
    assert type(stock.backbone) is SwinTransformer
    stock.load_state_dict(state, strict=True)
    assert_same_outputs(model, stock, rtol=1e-4, atol=1e-5)


def test_folding_needs_lora_only(base):
    model = build(retinanet_cfg(base))
    with pytest.raises(AdapterCheckpointError, match='Only LoRA folds'):
        fold_lora(model, config(retinanet_cfg(base)))


# -- mmengine runs ---------------------------------------------------------
def toy_model_cfg(base, tuning=None, dropout=0.0):
    """A classifier on the tiny Swin with a BatchNorm before its head."""
    return dict(type='MMAdapterToyClassifier',
                backbone=dict(type='mmadapter.AdapterSwinTransformer',
                              **TINY_SWIN, tuning=tuning,
                              adapter=dict(MONA, dropout=dropout),
                              init_cfg=dict(type='Pretrained',
                                            checkpoint=str(base))))


def register_toys():
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from mmengine.registry import DATASETS, METRICS, MODELS
    from torch.utils.data import Dataset

    @MODELS.register_module(name='MMAdapterToyClassifier', force=True)
    class Toy(BaseModel):

        def __init__(self, backbone):
            super().__init__()
            self.backbone = MODELS.build(backbone)
            self.bn = nn.BatchNorm1d(256)
            self.head = nn.Linear(256, 2)

        def forward(self, inputs, labels=None, mode='tensor'):
            logits = self.head(self.bn(self.backbone(inputs)[-1].mean((2, 3))))
            if mode == 'loss':
                return dict(loss=nn.functional.cross_entropy(logits, labels))
            return [(logits, labels)] if mode == 'predict' else logits

    @DATASETS.register_module(name='MMAdapterToyData', force=True)
    class Data(Dataset):

        def __len__(self):
            return 4

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return dict(inputs=torch.randn(3, 32, 32, generator=g),
                        labels=torch.tensor(i % 2))

    @METRICS.register_module(name='MMAdapterToyMetric', force=True)
    class Metric(BaseMetric):

        def process(self, data_batch, data_samples):
            self.results += [float(logits.sum()) for logits, _ in data_samples]

        def compute_metrics(self, results):
            return dict(logit_sum=sum(results))


def runner_cfg(work_dir, base, checkpoint_hook, tuning=None, dropout=0.0,
               **kwargs):
    loader = dict(dataset=dict(type='MMAdapterToyData'), batch_size=2,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'))
    return dict(
        model=toy_model_cfg(base, tuning, dropout), work_dir=str(work_dir),
        train_dataloader=loader, test_dataloader=loader,
        test_evaluator=dict(type='MMAdapterToyMetric'), test_cfg=dict(),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        default_hooks=dict(checkpoint=checkpoint_hook,
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0), default_scope='mmengine',
        log_level='WARNING', **kwargs)


def make_runner(cfg):
    """The Runner of ``cfg``, its checkpoint loads allowed the types real
    checkpoints hold (weights-only), as the table configs' runtime base and
    tools/train.py allow them."""
    from mmengine.runner import Runner
    cfg = cfg if isinstance(cfg, Config) else Config(cfg)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
        dict(type='mmadapter.CheckpointTypesHook')]
    return Runner.from_cfg(cfg)


@pytest.mark.slow
def test_runner_saves_resumes_and_tests_adapter_checkpoints(tmp_path, base):
    from mmengine.logging import HistoryBuffer

    from mmadapter.checkpoint import read_checkpoint_file
    from mmadapter.engine import enable_adapter_checkpoint_loading
    register_toys()
    hook = dict(type='mmadapter.AdapterCheckpointHook', interval=1)
    runner = make_runner(runner_cfg(tmp_path / 'train', base, hook))
    model = runner.train()
    final = {k: v.clone() for k, v in model.state_dict().items()}

    epoch1 = str(tmp_path / 'train' / 'epoch_1.pth')
    saved = load_file(epoch1)
    assert set(saved['state_dict']) == expected_keys(model)
    assert saved['optimizer']['state'] and saved['param_schedulers']
    assert any(isinstance(v, HistoryBuffer)
               for v in saved['message_hub']['log_scalars'].values())
    with pytest.raises(Exception, match='HistoryBuffer|weights_only'):
        torch.load(epoch1, weights_only=True)  # torch >= 2.6's default
    read_checkpoint_file(epoch1)

    # --resume from the adapter-only epoch 1 reaches the same weights
    resumed = make_runner(runner_cfg(tmp_path / 'resume', base, hook,
                                     load_from=epoch1, resume=True))
    resumed_model = resumed.train()
    assert resumed.epoch == 2
    for key, value in resumed_model.state_dict().items():
        torch.testing.assert_close(value, final[key], msg=key)

    # tools/test.py: a fresh model, load_from, Runner.test() (no
    # init_weights), with the stock checkpoint hook plus the one call
    epoch2 = str(tmp_path / 'train' / 'epoch_2.pth')
    cfg = runner_cfg(tmp_path / 'test', base, dict(type='CheckpointHook'),
                     load_from=epoch2)
    tester = make_runner(enable_adapter_checkpoint_loading(Config(cfg)))
    metrics = tester.test()
    for key, value in tester.model.state_dict().items():
        assert torch.equal(value, final[key]), key
    model.eval()
    with torch.no_grad():
        expected = sum(float(model(torch.stack(
            [runner.test_dataloader.dataset[i]['inputs'] for i in (j, j + 1)]
        )).sum()) for j in (0, 2))
    assert metrics['logit_sum'] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_load_from_a_full_checkpoint_records_it_as_base(tmp_path, base):
    register_toys()
    full_hook = dict(type='CheckpointHook', interval=1)
    make_runner(runner_cfg(tmp_path / 'full', base, full_hook,
                           tuning='full')).train()
    full = str(tmp_path / 'full' / 'epoch_2.pth')
    hook = dict(type='mmadapter.AdapterCheckpointHook', interval=1)
    runner = make_runner(runner_cfg(tmp_path / 'ft', base, hook,
                                    load_from=full))
    model = runner.train()
    saved = load_file(tmp_path / 'ft' / 'epoch_2.pth')
    record = saved['meta'][ADAPTER_META_KEY]['bases']['backbone']
    assert record['checkpoint'] == full and record['source'] == 'load_from'
    fresh = make_runner(runner_cfg(tmp_path / 't', base, hook)).model
    load_adapter_checkpoint(fresh, str(tmp_path / 'ft' / 'epoch_2.pth'))
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


@pytest.mark.slow
def test_resume_from_a_full_checkpoint_repeats_the_uninterrupted_run(
        tmp_path, base):
    """With Mona's dropout on: RandomStateHook restores the random states."""
    register_toys()
    hook = dict(type='CheckpointHook', interval=1)
    extra = dict(dropout=0.1,
                 custom_hooks=[dict(type='mmadapter.RandomStateHook')])
    final = make_runner(runner_cfg(tmp_path / 'train', base, hook,
                                   **extra)).train()
    epoch1 = str(tmp_path / 'train' / 'epoch_1.pth')
    resumed = make_runner(runner_cfg(tmp_path / 'resume', base, hook,
                                     load_from=epoch1, resume=True, **extra))
    resumed_model = resumed.train()
    assert resumed.epoch == 2
    trained = {n for n, p in final.named_parameters() if p.requires_grad}
    assert trained and all('adapters.' in n or not n.startswith('backbone.')
                           for n in trained)
    for key, value in resumed_model.state_dict().items():
        torch.testing.assert_close(value, final.state_dict()[key], msg=key)

    # without the hook the resumed run replays epoch 1's dropout masks
    del extra['custom_hooks']
    plain = make_runner(runner_cfg(tmp_path / 'plain', base, hook,
                                   **extra)).train()
    replay = make_runner(runner_cfg(
        tmp_path / 'replay', base, hook, resume=True, **extra,
        load_from=str(tmp_path / 'plain' / 'epoch_1.pth'))).train()
    assert any(not torch.equal(v, plain.state_dict()[k])
               for k, v in replay.state_dict().items() if 'adapters.' in k)
