"""A depthwise conv's weight gradient, computed as a conv.

On CPU, oneDNN's own weight-gradient kernel for depthwise convs is many
times slower than its forward (benchmarks/PROFILE_cpu_512.md,
KERNEL_CHOICES_cpu.md); the same sums computed as a depthwise conv of the
padded input with the output gradient as its kernel run at forward speed.
"""
import torch
import torch.nn.functional as F


def depthwise_weight_grad(x: torch.Tensor, grad_out: torch.Tensor,
                          kernel_size: int, padding: int) -> torch.Tensor:
    """Weight gradient (C, 1, k, k) of ``conv2d(x, w, padding=padding,
    groups=C)`` (stride 1, square kernel) given its output gradient.

    ``grad_w[c, i, j] = sum_{b,h,w} pad(x)[b, c, h + i, w + j] *
    grad_out[b, c, h, w]``: per sample, the depthwise conv of the padded
    input with the output gradient as each group's kernel, summed over the
    batch. One conv per sample, because folding the batch into the groups'
    input channels is much slower in oneDNN (KERNEL_CHOICES_cpu.md). The
    input is padded here, not by the conv, because oneDNN's padded conv
    with a kernel this large takes a larger workspace (a higher peak).
    """
    B, C, H, W = grad_out.shape
    padded = F.pad(x, [padding] * 4)
    grad = None
    for b in range(B):
        kernel = grad_out[b:b + 1].transpose(0, 1)  # (C, 1, H, W)
        one = F.conv2d(padded[b:b + 1], kernel, groups=C)
        grad = one if grad is None else grad.add_(one)
    return grad.reshape(C, 1, kernel_size, kernel_size)
