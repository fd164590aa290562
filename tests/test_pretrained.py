"""Pretrained loading through init_cfg: Microsoft's official Swin files,
mmdet/mmseg-format files, the report, and window-size changes."""
import torch

from conftest import stock_tiny_swin, tiny_swin


def to_official_swin(state_dict):
    """mmdet naming -> Microsoft's (the inverse of mmdet's swin_converter),
    as in the files Microsoft releases."""

    def unfold_reduction(x):
        out_c, in_c = x.shape
        x = x.reshape(out_c, in_c // 4, 4).transpose(1, 2)
        return x[:, [0, 2, 1, 3], :].reshape(out_c, in_c)

    def unfold_norm(x):
        x = x.reshape(x.shape[0] // 4, 4).transpose(0, 1)
        return x[[0, 2, 1, 3], :].reshape(-1)

    official = {}
    for k, v in state_dict.items():
        if k.startswith('norm') or k.endswith('relative_position_index'):
            continue  # the classification model has one final norm instead
        k = k.replace('stages.', 'layers.').replace('attn.w_msa.', 'attn.')
        k = k.replace('ffn.layers.0.0.', 'mlp.fc1.').replace(
            'ffn.layers.1.', 'mlp.fc2.')
        k = k.replace('patch_embed.projection', 'patch_embed.proj')
        if 'downsample.reduction' in k:
            v = unfold_reduction(v)
        elif 'downsample.norm' in k:
            v = unfold_norm(v)
        official[k] = v
    official['norm.weight'] = torch.ones(256)
    official['head.weight'] = torch.zeros(10, 256)
    return official


def trained_stock():
    stock = stock_tiny_swin()
    stock.init_weights()
    with torch.no_grad():  # make norms non-trivial so a mix-up would show
        for n, p in stock.named_parameters():
            if 'norm' in n:
                p.add_(torch.randn_like(p) * 0.1)
    return stock


def test_loads_microsoft_official_checkpoint(tmp_path):
    stock = trained_stock()
    path = tmp_path / 'swin_tiny_official.pth'
    torch.save({'model': to_official_swin(stock.state_dict())}, path)
    model = tiny_swin(adapter=dict(type='Mona', bottleneck=8),
                      init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    report = model.pretrained_report
    own = model.state_dict()
    for k, v in stock.state_dict().items():
        if k.startswith('norm'):
            continue  # not in a classification checkpoint
        assert torch.equal(own[k], v), k
    assert sorted(report.missing) == [f'norm{i}.{p}' for i in range(4)
                                      for p in ('bias', 'weight')]
    assert report.missing_adapter and all('adapters.' in k
                                          for k in report.missing_adapter)
    assert 'norm.weight' in report.unexpected
    assert 'head.weight' not in report.loaded
    # the tuning policy is applied after loading
    assert all(p.requires_grad == ('adapters.' in n)
               for n, p in model.named_parameters())


def test_loads_mmdet_detector_checkpoint_with_backbone_prefix(tmp_path):
    stock = trained_stock()
    path = tmp_path / 'retinanet.pth'
    state = {f'backbone.{k}': v for k, v in stock.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 64, 1, 1)
    torch.save({'meta': {}, 'state_dict': state}, path)
    model = tiny_swin(adapter=dict(type='LoRA', rank=4),
                      init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert model.pretrained_report.missing == []
    assert model.pretrained_report.unexpected == []
    assert torch.equal(
        model.state_dict()['stages.0.blocks.0.attn.w_msa.qkv.weight'],
        stock.state_dict()['stages.0.blocks.0.attn.w_msa.qkv.weight'])


def test_loads_unprefixed_mmseg_style_checkpoint(tmp_path):
    # mmdet's own init_weights crashes on these (IndexError).
    stock = trained_stock()
    path = tmp_path / 'swin_mmseg.pth'
    torch.save(stock.state_dict(), path)
    model = tiny_swin(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    stock.eval(), model.eval()
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(model(x), stock(x)):
        torch.testing.assert_close(a, b)


def test_relative_position_tables_resized_for_another_window(tmp_path):
    stock = trained_stock()
    path = tmp_path / 'swin_w7.pth'
    torch.save(stock.state_dict(), path)
    model = tiny_swin(window_size=12,
                      init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    key = 'stages.0.blocks.0.attn.w_msa.relative_position_bias_table'
    assert model.state_dict()[key].shape == (23 * 23, 1)
    assert key in model.pretrained_report.loaded
    assert not model.pretrained_report.shape_mismatch
