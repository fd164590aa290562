"""Mixed precision on the CPU for every table config: mmcv's compiled ops
(float32-only CPU kernels) compute in float32 under CPUAmpOptimWrapper's
bfloat16 autocast and hand back the dtype they were given (issue 12: the
COCO config's RPN nms stopped with 'expected scalar type Float but found
BFloat16')."""
import pytest
import torch
from mmcv.ops import RoIAlign, batched_nms, nms

from mmadapter.engine.amp import CPUAmpOptimWrapper
from mmadapter.engine.cpu_autocast_ops import (
    run_mmcv_ops_in_float32_under_cpu_autocast,
)


@pytest.fixture(scope='module', autouse=True)
def patched():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1)
    CPUAmpOptimWrapper(optimizer=optimizer)  # patches once per process
    return run_mmcv_ops_in_float32_under_cpu_autocast()  # idempotent: 0


def test_patching_is_once_per_process(patched):
    assert patched == 0
    from mmcv.ops.nms import NMSop
    assert NMSop.apply.__wrapped__  # the original, kept


def boxes_and_scores():
    torch.manual_seed(0)
    xy = torch.rand(50, 2) * 200
    wh = torch.rand(50, 2) * 60 + 4
    return torch.cat([xy, xy + wh], 1), torch.rand(50)


def test_unpatched_nms_fails_in_bf16_as_the_issue_reports():
    from mmcv.ops.nms import NMSop
    boxes, scores = boxes_and_scores()
    with pytest.raises(RuntimeError, match='Float'):
        NMSop.apply.__wrapped__(boxes.bfloat16(), scores.bfloat16(), 0.5, 0,
                                0, -1)


def test_nms_under_cpu_autocast_matches_float32():
    boxes, scores = boxes_and_scores()
    boxes, scores = boxes.bfloat16().float(), scores.bfloat16().float()
    _, expected = nms(boxes, scores, 0.5)
    _, expected_batched = batched_nms(boxes, scores, torch.arange(50) % 3,
                                      dict(type='nms', iou_threshold=0.5))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        dets, keep = nms(boxes.bfloat16(), scores.bfloat16(), 0.5)
        _, keep_batched = batched_nms(
            boxes.bfloat16(), scores.bfloat16(), torch.arange(50) % 3,
            dict(type='nms', iou_threshold=0.5))
    assert dets.dtype == torch.bfloat16  # the caller's dtype
    assert torch.equal(keep, expected)
    assert torch.equal(keep_batched, expected_batched)


def test_roi_align_under_cpu_autocast_returns_bf16_with_gradients():
    torch.manual_seed(0)
    feats = torch.randn(1, 8, 32, 32)
    rois = torch.tensor([[0, 2., 2., 20., 24.], [0, 5., 1., 30., 9.]])
    layer = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=0)
    expected = layer(feats.bfloat16().float(), rois)
    x = feats.bfloat16().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x, rois)
        # mmdet's RoI extractor writes the result into a tensor of the
        # features' dtype; a float32 result would fail there
        pooled = x.new_zeros(2, 8, 7, 7)
        pooled[torch.tensor([0, 1])] = out
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    pooled.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and x.grad.abs().sum() > 0


def test_outside_autocast_nothing_changes():
    from mmcv.ops.nms import NMSop
    boxes, scores = boxes_and_scores()
    dets, keep = nms(boxes, scores, 0.5)
    assert dets.dtype == torch.float32
    assert torch.equal(keep, NMSop.apply.__wrapped__(boxes, scores, 0.5, 0,
                                                     0, -1))
