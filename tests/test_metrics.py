"""Tests for ddc_env.metrics."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from ddc_env import metrics


def small_net() -> nn.Sequential:
    """Conv(3->8, 3x3) + BN(8) + ReLU + Linear(8*4*4 -> 10)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


def test_count_params_matches_hand_count() -> None:
    conv = 8 * 3 * 3 * 3 + 8  # weight + bias = 224
    bn = 8 + 8  # weight + bias; running stats are buffers
    linear = 128 * 10 + 10  # = 1290
    assert metrics.count_params(small_net()) == conv + bn + linear == 1530


def test_flops_of_conv_is_two_macs() -> None:
    conv = nn.Conv2d(3, 16, 3, stride=1, padding=1)
    # output 2 x 16 x 8 x 8, each output value takes 3 * 3 * 3 MACs
    macs = 2 * 16 * 8 * 8 * 3 * 3 * 3
    assert metrics.count_flops(conv, (2, 3, 8, 8)) == 2 * macs == 110_592


def test_flops_of_strided_grouped_conv() -> None:
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4, bias=False)
    # output 1 x 8 x 4 x 4, each output value sees 8 / 4 = 2 input channels x 3 x 3
    macs = 8 * 4 * 4 * 2 * 3 * 3
    assert metrics.count_flops(conv, (1, 8, 8, 8)) == 2 * macs == 4608


def test_flops_of_linear_is_two_macs() -> None:
    linear = nn.Linear(20, 7)
    assert metrics.count_flops(linear, (5, 20)) == 2 * 5 * 20 * 7 == 1400


def test_flops_restores_training_flags_and_grad_mode() -> None:
    net = small_net()
    net[1].eval()  # a mixed-mode module must come back exactly as it was
    metrics.count_flops(net, (1, 3, 4, 4))
    assert [m.training for m in net.modules()] == [True, True, False, True, True, True]
    assert torch.is_grad_enabled()


def test_serialized_size_equals_saved_bytes_and_grows() -> None:
    small = nn.Linear(10, 10)
    big = nn.Linear(100, 100)
    buffer = io.BytesIO()
    torch.save(small.state_dict(), buffer)
    assert metrics.serialized_size(small) == len(buffer.getvalue())
    # 10100 float32 parameters take at least 4 bytes each
    assert metrics.serialized_size(big) > metrics.serialized_size(small)
    assert metrics.serialized_size(big) >= 4 * 10100


def test_latency_statistics_and_restores_state() -> None:
    net = small_net()
    threads = torch.get_num_threads()
    result = metrics.measure_latency(net, (2, 3, 4, 4), num_threads=1, warmup=2, repeats=15)
    for value in (result.median_ms, result.p25_ms, result.p75_ms):
        assert math.isfinite(value) and value > 0
    assert result.p25_ms <= result.median_ms <= result.p75_ms
    assert (result.runs, result.device, result.batch_size, result.num_threads) == (15, "cpu", 2, 1)
    assert net.training and all(m.training for m in net.modules())
    assert torch.get_num_threads() == threads


def test_latency_channels_last_leaves_module_untouched() -> None:
    net = small_net()
    result = metrics.measure_latency(net, (1, 3, 4, 4), warmup=0, repeats=1, channels_last=True)
    assert result.runs == 1 and result.p25_ms == result.median_ms == result.p75_ms
    assert net[0].weight.is_contiguous()
    assert net.training


def test_bigger_model_is_slower() -> None:
    tiny = nn.Linear(8, 8)
    big = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1))
    tiny_shape, big_shape = (1, 8), (1, 3, 64, 64)
    assert metrics.count_flops(big, big_shape) > 100_000 * metrics.count_flops(tiny, tiny_shape)
    fast = metrics.measure_latency(tiny, tiny_shape, warmup=2, repeats=10)
    slow = metrics.measure_latency(big, big_shape, warmup=2, repeats=10)
    assert slow.median_ms > fast.median_ms


def test_measure_costs() -> None:
    net = small_net()
    costs = metrics.measure_costs(net, (1, 3, 4, 4), warmup=1, repeats=3)
    assert costs.params == 1530
    assert costs.flops == metrics.count_flops(net, (1, 3, 4, 4))
    assert costs.size_bytes == metrics.serialized_size(net)
    assert costs.latency_ms is not None and costs.latency_ms > 0
    assert metrics.measure_costs(net, (1, 3, 4, 4), latency=False).latency_ms is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeats": 0}, "repeats"),
        ({"warmup": -1}, "warmup"),
        ({"num_threads": 0}, "num_threads"),
    ],
)
def test_latency_rejects_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.measure_latency(nn.Linear(2, 2), (1, 2), **kwargs)


def test_bad_input_shape_and_options() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        metrics.count_flops(nn.Linear(2, 2), (0, 2))
    with pytest.raises(ValueError, match="channels_last"):
        metrics.measure_latency(nn.Linear(2, 2), (1, 2), channels_last=True)
    with pytest.raises(ValueError, match="latency=False"):
        metrics.measure_costs(nn.Linear(2, 2), (1, 2), latency=False, repeats=3)
