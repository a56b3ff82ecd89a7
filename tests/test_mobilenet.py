"""MobileNetV2: the inverted residual unit (costs, channel ties, decisions, inheritance) and the exact import of
torchvision's ``mobilenet_v2`` weights."""
from __future__ import annotations

import random

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ddc_env.arch import REMOVE, apply_decisions, build, decision_table, inherit, stale_batchnorms
from ddc_env.models import load_torchvision_state_dict, mobilenet_v2, to_torchvision_state_dict
from ddc_env.models.mobilenet import MOBILENET_V2_SETTINGS
from nets import randomise_bn


def _torchvision_mobilenet(cifar: bool) -> nn.Module:
    net = torchvision.models.mobilenet_v2(num_classes=10)
    if cifar:  # the CIFAR variant: stride-1 stem and second stage
        net.features[0][0].stride = (1, 1)
        net.features[2].conv[1][0].stride = (1, 1)
    return net.eval()


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_torchvision_weights_import_exactly(stem):
    theirs = _torchvision_mobilenet(stem == "cifar")
    randomise_bn(theirs)
    spec = mobilenet_v2(num_classes=10, stem=stem)
    assert spec.params == sum(p.numel() for p in theirs.parameters())
    ours = load_torchvision_state_dict(spec, theirs.state_dict()).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() == 0.0
    back = to_torchvision_state_dict(ours)
    assert back.keys() == theirs.state_dict().keys()


def test_costs_match_the_built_module():
    spec = mobilenet_v2(input_size=(16, 16))
    net = build(spec).eval()
    assert spec.params == sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 16, 16))
    assert spec.flops == counter.get_total_flops()


def test_decisions_per_block_and_stage():
    spec = mobilenet_v2()
    table = {d.name: d for d in decision_table(spec)}
    blocks = sum(n for _, _, n, _ in MOBILENET_V2_SETTINGS)
    stages = [d for d in table.values() if d.kind == "stage"]
    assert len(stages) == len(MOBILENET_V2_SETTINGS)  # every stage's output width (the stem's is its conv's own)
    assert table["stage1"].members == ("features.1",)  # a one-block stage: its output width is a stage decision
    assert table["stage2"].members == ("features.2", "features.3")
    removable = [n for n, d in table.items() if d.removable]
    identity = [f"features.{i}" for i in range(1, blocks + 1) if spec.unit(f"features.{i}").shortcut == "identity"]
    assert removable == identity + [f"features.{blocks + 1}"]  # stride-1 blocks without projection, the last 1x1
    assert "features.1" not in table  # t = 1, projection: its depthwise conv runs on the stem's channels
    assert table["features.2"].space == "features.2/hidden" and table["features.2"].channels == 16 * 6


def test_expansion_ratio_and_widths_give_students_that_inherit_exactly_at_full_width():
    spec = mobilenet_v2(input_size=(16, 16))
    teacher = build(spec).eval()
    randomise_bn(teacher)
    x = torch.randn(2, 3, 16, 16)
    full = inherit(teacher, spec, apply_decisions(spec, {})).eval()
    with torch.no_grad():
        torch.testing.assert_close(full(x), teacher(x))
    student_spec = apply_decisions(spec, {"features.2": 0.5, "stage2": 0.5})  # expansion 6 -> 3, stage 24 -> 16
    assert student_spec.unit("features.2").hidden_channels == 48
    assert student_spec.unit("features.2").out_channels == student_spec.unit("features.3").out_channels == 16
    student = inherit(teacher, spec, student_spec).eval()
    assert sum(p.numel() for p in student.parameters()) == student_spec.params
    # a narrower expansion keeps the expansion and depthwise BNs exact; the projection's BN is re-estimated
    stale = stale_batchnorms(student, spec, student_spec)
    assert student.unit("features.2").expand_bn not in stale and student.unit("features.2").project_bn in stale
    kept = torch.topk(teacher.unit("features.2").expand_conv.weight.abs().flatten(1).sum(1)
                      + teacher.unit("features.2").dw_conv.weight.abs().flatten(1).sum(1), 48).indices.sort().values
    torch.testing.assert_close(student.unit("features.2").dw_conv.weight, teacher.unit("features.2").dw_conv.weight[kept])


def test_random_students_are_valid_and_removed_blocks_are_skipped_exactly():
    spec = mobilenet_v2(input_size=(16, 16))
    teacher = build(spec).eval()
    randomise_bn(teacher)
    rng = random.Random(0)
    x = torch.randn(2, 3, 16, 16)
    for _ in range(5):
        choices = {d.name: rng.choice([REMOVE] * d.removable + [0.25, 0.5, 1.0] * d.shrinkable or [1.0])
                   for d in decision_table(spec)}
        student_spec = apply_decisions(spec, choices)
        student = inherit(teacher, spec, student_spec).eval()
        assert student(x).shape == (2, 10)
    skipped = apply_decisions(spec, {"features.3": REMOVE})
    student = inherit(teacher, spec, skipped).eval()
    with torch.no_grad():
        h = x
        for name, module in teacher.units.items():
            if name != "features_3":
                h = module(h)
        torch.testing.assert_close(student(x), h)
