"""Adapter-only checkpoints on a Microsoft ImageNet base (the README's
recommended set-up): such files have no per-stage output norms
(``norm0..norm3``), which stay frozen at their initial values, so the
adapter-only checkpoint must carry them for the model to be rebuilt."""
import re

import pytest
import torch

from mmadapter.apis.adapter_sets import (
    AdapterSetError,
    load_adapter_set,
    read_task_checkpoint,
)
from mmadapter.backbones.pretrained import CheckpointMismatchError
from mmadapter.checkpoint import (
    ADAPTER_META_KEY,
    load_adapter_checkpoint,
    save_adapter_checkpoint,
)
from mmadapter.safe_load import load_file
from test_checkpoint import make_runner, register_toys, runner_cfg
from test_pretrained import to_official_swin, trained_stock
from tiny_detectors import build, retinanet_cfg, trained


def stage_norms(model):
    """The backbone's output norms (those of its out_indices)."""
    norms = {k for k in model.state_dict()
             if re.match(r'backbone\.norm\d\.(weight|bias)$', k)}
    assert len(norms) == 6  # RetinaNet: out_indices (1, 2, 3)
    return norms


@pytest.fixture
def microsoft_base(tmp_path):
    path = tmp_path / 'swin_tiny_patch4_window7_224_22k.pth'
    torch.save({'model': to_official_swin(trained_stock().state_dict())},
               path)
    return str(path)


def test_adapter_checkpoint_carries_the_norms_the_base_lacks(tmp_path,
                                                             microsoft_base):
    model = trained(retinanet_cfg(microsoft_base))
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path)
    saved = load_file(path)
    backbone_keys = {k for k in saved['state_dict']
                     if k.startswith('backbone.') and '.adapters.' not in k}
    assert backbone_keys == stage_norms(model)
    record = saved['meta'][ADAPTER_META_KEY]['bases']['backbone']
    assert sorted(record['frozen_not_in_base']) == sorted(
        k[len('backbone.'):] for k in stage_norms(model))

    fresh = build(retinanet_cfg(microsoft_base))  # as tools/test.py
    load_adapter_checkpoint(fresh, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_a_base_lacking_weights_it_trained_on_is_still_refused(
        tmp_path, microsoft_base):
    model = trained(retinanet_cfg(microsoft_base))
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path)
    official = load_file(microsoft_base)['model']
    partial = tmp_path / 'partial.pth'
    torch.save({'model': {k: v for k, v in official.items()
                          if not k.startswith('layers.3.')}}, partial)
    with pytest.warns(UserWarning), pytest.raises(
            CheckpointMismatchError,
            match='frozen backbone parameters are not in it'):
        load_adapter_checkpoint(build(retinanet_cfg(microsoft_base)), path,
                                base=str(partial))


def test_microsoft_base_checkpoint_serves_as_an_adapter_set(tmp_path,
                                                            microsoft_base):
    from tiny_detectors import config
    model = trained(retinanet_cfg(microsoft_base))
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path, config=config(
        retinanet_cfg(microsoft_base)))
    shared = build(retinanet_cfg(microsoft_base))
    shared.init_weights()
    backbone = shared.backbone
    load_adapter_set(backbone, 'task', read_task_checkpoint(path),
                     activate=True)
    backbone.eval()
    model.backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(backbone(x), model.backbone(x)):
            assert torch.equal(a, b)

    # a backbone whose output norms are not the ones trained with: refused
    other = build(retinanet_cfg(microsoft_base))
    other.init_weights()
    with torch.no_grad():
        other.backbone.norm1.weight.mul_(2)
    with pytest.raises(AdapterSetError,
                       match=r'frozen backbone tensors its base lacks '
                             r'\(e\.g\. norm1\.weight\) that differ'):
        load_adapter_set(other.backbone, 'task', read_task_checkpoint(path))


@pytest.mark.slow
def test_runner_saves_and_tests_on_a_microsoft_base(tmp_path,
                                                    microsoft_base):
    """The hook's save (it checks the base before the first save) and the
    load of a Runner.test() (no init_weights) on a Microsoft base."""
    register_toys()
    hook = dict(type='mmadapter.AdapterCheckpointHook', interval=1)
    model = make_runner(runner_cfg(tmp_path / 'train', microsoft_base,
                                   hook)).train()
    final = {k: v.clone() for k, v in model.state_dict().items()}
    epoch2 = str(tmp_path / 'train' / 'epoch_2.pth')
    tester = make_runner(runner_cfg(tmp_path / 'test', microsoft_base, hook,
                                    load_from=epoch2))
    tester.test()
    for key, value in tester.model.state_dict().items():
        assert torch.equal(value, final[key]), key


def test_saves_read_the_base_once(tmp_path, microsoft_base, monkeypatch):
    import mmadapter.checkpoint.base_weights as base_weights
    model = trained(retinanet_cfg(microsoft_base))
    reads = []
    real_read = base_weights.read_checkpoint
    monkeypatch.setattr(base_weights, 'read_checkpoint',
                        lambda path: reads.append(path) or real_read(path))
    for name in ('a.pth', 'b.pth'):
        save_adapter_checkpoint(model, str(tmp_path / name))
    assert reads == [microsoft_base]
    saved = load_file(tmp_path / 'b.pth')
    assert stage_norms(model) <= set(saved['state_dict'])
