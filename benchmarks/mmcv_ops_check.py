"""mmcv's compiled ops that the table configs run on the GPU, checked
against reference implementations, in float32 and float16:

* ``nms`` (RetinaNet's test-time NMS, Cascade Mask R-CNN's RPN): the kept
  boxes equal ``torchvision.ops.nms``'s;
* ``roi_align`` (Cascade Mask R-CNN's RoI extractors and mask targets):
  values and input gradients equal ``torchvision.ops.roi_align``'s
  (``aligned=True``, adaptive sampling), as mmdet calls it;
* ``sigmoid_focal_loss`` (RetinaNet's loss whenever predictions are on
  CUDA): values and gradients equal the formula mmdet's
  ``py_sigmoid_focal_loss`` computes.

    python benchmarks/mmcv_ops_check.py --device cuda --out ops.json

Float16 inputs are compared with the float32 reference at float16's
precision. Exits 1 when a check fails; an op without an implementation for
the device (mmcv 2.1 has no CPU sigmoid focal loss) is reported as skipped.
The lease command (benchmarks/gpu_lease.sh) runs it on the GPU; its test
runs it on the CPU.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-4),
             torch.float16: dict(atol=2e-3, rtol=1e-2)}


def random_boxes(n, size, generator, device):
    xy = torch.rand(n, 2, generator=generator) * size
    wh = 8 + torch.rand(n, 2, generator=generator) * size / 4
    return torch.cat([xy, xy + wh], dim=1).to(device)


def check_nms(device, dtype, generator):
    from mmcv.ops import nms
    from torchvision.ops import nms as tv_nms
    boxes = random_boxes(500, 300, generator, device).to(dtype)
    scores = torch.rand(500, generator=generator).to(device, dtype)
    _, keep = nms(boxes, scores, 0.5)
    # the reference on the same (rounded) values, in float32
    reference = tv_nms(boxes.float(), scores.float(), 0.5)
    same = torch.equal(keep.cpu().sort().values, reference.cpu().sort().values)
    return dict(ok=same, kept=int(keep.numel()),
                reference_kept=int(reference.numel()))


def check_roi_align(device, dtype, generator):
    from mmcv.ops import roi_align
    from torchvision.ops import roi_align as tv_roi_align
    feats = torch.randn(2, 16, 50, 68, generator=generator).to(device, dtype)
    boxes = random_boxes(64, 200, generator, device)
    index = (torch.arange(64, device=device) % 2).float()[:, None]
    rois = torch.cat([index, boxes], dim=1).to(dtype)
    x = feats.clone().requires_grad_()
    out = roi_align(x, rois, (7, 7), 0.25, 0, 'avg', True)
    out.float().square().sum().backward()
    x_ref = feats.float().clone().requires_grad_()
    ref = tv_roi_align(x_ref, rois.float(), (7, 7), spatial_scale=0.25,
                       sampling_ratio=0, aligned=True)
    ref.square().sum().backward()
    tol = TOLERANCE[dtype]
    return dict(
        ok=bool(torch.allclose(out.float(), ref, **tol) and torch.allclose(
            x.grad.float(), x_ref.grad, atol=tol['atol'] * 10,
            rtol=tol['rtol'] * 10)),
        max_abs_diff=float((out.float() - ref).abs().max()),
        grad_max_abs_diff=float((x.grad.float() - x_ref.grad).abs().max()))


def reference_focal_loss(pred, target, gamma=2.0, alpha=0.25):
    """mmdet's py_sigmoid_focal_loss, elementwise (reduction 'none')."""
    num_classes = pred.size(1)
    t = F.one_hot(target, num_classes + 1)[:, :num_classes].type_as(pred)
    p = pred.sigmoid()
    pt = (1 - p) * t + p * (1 - t)
    weight = (alpha * t + (1 - alpha) * (1 - t)) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(
        pred, t, reduction='none') * weight


def check_sigmoid_focal_loss(device, dtype, generator):
    from mmcv.ops import sigmoid_focal_loss
    pred = (torch.randn(256, 20, generator=generator) * 3).to(device, dtype)
    target = torch.randint(0, 21, (256,), generator=generator).to(device)
    x = pred.clone().requires_grad_()
    try:
        loss = sigmoid_focal_loss(x, target, 2.0, 0.25, None, 'none')
    except (RuntimeError, NotImplementedError) as error:
        if 'not found' in str(error) or 'not implemented' in str(
                error).lower():
            return dict(ok=None, skipped=str(error).splitlines()[0])
        raise
    loss.float().sum().backward()
    x_ref = pred.float().clone().requires_grad_()
    ref = reference_focal_loss(x_ref, target)
    ref.sum().backward()
    tol = TOLERANCE[dtype]
    return dict(
        ok=bool(torch.allclose(loss.float(), ref, **tol)
                and torch.allclose(x.grad.float(), x_ref.grad, **tol)),
        max_abs_diff=float((loss.float() - ref).abs().max()),
        grad_max_abs_diff=float((x.grad.float() - x_ref.grad).abs().max()))


CHECKS = dict(nms=check_nms, roi_align=check_roi_align,
              sigmoid_focal_loss=check_sigmoid_focal_loss)


def run(device):
    import mmcv
    from mmcv.ops import get_compiling_cuda_version
    results = dict(device=device, mmcv=mmcv.__version__,
                   mmcv_cuda=get_compiling_cuda_version(),
                   torch=torch.__version__, checks={})
    if device.startswith('cuda'):
        results['gpu'] = torch.cuda.get_device_name(device)
    # float16 is what the GPU's mixed precision hands these ops; mmcv's CPU
    # kernels take float32 (CPU autocast runs them in float32)
    dtypes = (torch.float32, torch.float16) if device.startswith('cuda') \
        else (torch.float32,)
    for name, check in CHECKS.items():
        for dtype in dtypes:
            generator = torch.Generator().manual_seed(0)
            key = f'{name}/{str(dtype).split(".")[-1]}'
            try:
                results['checks'][key] = check(device, dtype, generator)
            except Exception as error:  # noqa: BLE001 - reported, exit 1
                results['checks'][key] = dict(
                    ok=False, error=f'{type(error).__name__}: {error}')
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args(argv)
    results = run(args.device)
    for key, result in results['checks'].items():
        state = {True: 'ok', False: 'FAILED', None: 'skipped'}[result['ok']]
        detail = ', '.join(f'{k} {v}' for k, v in result.items() if k != 'ok')
        print(f'{key:28s} {state:8s} {detail}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    failed = [k for k, r in results['checks'].items() if r['ok'] is False]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
