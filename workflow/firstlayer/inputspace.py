"""The linear CNN in input space: its logits are linear in the image, x . G + b, with G = conv_transpose2d(fc weight
as K maps, conv weight). One transposed convolution of the weights replaces the (b, K, h', w') activations, for one
seed or for N seeds stacked (N, *shape) in one graph: the only place where stacking seeds pays on a CPU."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: LinearCNN's parameters, the only ones the input-space forward reads.
PARAMETERS = ("conv.weight", "fc.weight", "fc.bias")


def linear_logits(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(N, b, classes) logits of N stacked LinearCNNs (`params`: each of ``PARAMETERS`` stacked (N, *shape)) for
    images (N, b, c, h, w), one batch per seed, or (b, c, h, w) shared by every seed. Same function and gradients as
    conv -> flatten -> linear, rounding aside (measured no further from float64 than the module's own)."""
    w, fc = params["conv.weight"], params["fc.weight"]  # (N, K, c, k, k), (N, classes, K * h' * w')
    n, k = w.shape[:2]
    classes, out_h, out_w = fc.shape[1], x.shape[-2] - w.shape[-2] + 1, x.shape[-1] - w.shape[-1] + 1
    maps = fc.view(n, classes, k, out_h, out_w).transpose(0, 1).reshape(classes, n * k, out_h, out_w)
    g = F.conv_transpose2d(maps, w.flatten(0, 1), groups=n)  # (classes, N * c, h, w)
    g = g.view(classes, n, -1).transpose(0, 1)  # (N, classes, c * h * w)
    if x.dim() == 4:  # shared images: one (b, D) x (D, N * classes) product, no per-seed copies of the batch
        logits = (x.flatten(1) @ g.flatten(0, 1).T).view(x.shape[0], n, classes).transpose(0, 1)
    else:
        logits = torch.bmm(x.flatten(2), g.transpose(1, 2))
    return logits + params["fc.bias"].unsqueeze(1)


def check_linear_cnn(model: nn.Module) -> None:
    """Refuse a network the input-space forward would not compute: other parameters than LinearCNN's, a first-layer
    bias, buffers (batch statistics) or a module that acts otherwise in training (dropout): these would need the
    module's own forward, and its eval mode to evaluate."""
    names = tuple(name for name, _ in model.named_parameters())
    if names != PARAMETERS:
        raise ValueError(f"the input-space forward computes LinearCNN ({', '.join(PARAMETERS)}), not {names}")
    if next(model.buffers(), None) is not None:
        raise ValueError("cannot stack seeds of a network with buffers (batch statistics)")
    dropout = [name for name, m in model.named_modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if dropout:
        raise ValueError(f"cannot stack seeds of a network with dropout ({', '.join(dropout)}): it needs eval mode")


def input_space_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """LinearCNN's forward in input space on the module's own parameters: (b, c, h, w) -> (b, classes), with a tenth
    of the operations of conv -> flatten -> linear on a batch of 64 32x32 images (G does not grow with the batch)."""
    check_linear_cnn(model)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return linear_logits({name: model.get_parameter(name).unsqueeze(0) for name in PARAMETERS}, x)[0]

    return forward
