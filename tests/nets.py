"""Helpers for tests on built networks."""
from __future__ import annotations

import torch
from torch import nn


def randomise_bn(net: nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so slicing errors show."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
