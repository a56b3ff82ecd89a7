"""The open IR: unit kinds registered from outside the library, depthwise convs and their channel ties, the model
registry, and the action codec (layout, masks, nearest actions, continuous keep ratios, the lossless recorded form)."""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ddc_env.arch import (REMOVE, ActionCodec, ActionError, Conv, GlobalPool, Keep, Linear, NetSpec, Pool,
                          SpecError, Unit, apply_decisions, build, channel_counts, decision_table, inherit,
                          register_unit, stale_batchnorms, with_channels)
from ddc_env.arch.codec import parse, token
from ddc_env.arch.units import NEW, DecisionContext, Ports, UnitDecision
from ddc_env.arch.units.base import copy_bn, copy_conv, l1_out
from ddc_env.models import get_model, list_models, register_model, resnet18


def _costs_match(spec: NetSpec) -> None:
    net = build(spec).eval()
    assert spec.params == sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, spec.in_channels, *spec.input_size))
    assert spec.flops == counter.get_total_flops()


# ------------------------------------------------------------------------------- a unit kind from outside


class ScaledConvUnit(nn.Module):
    def __init__(self, c_in: int, u: "ScaledConv") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, u.out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(u.out_channels)
        self.scale = u.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))) * self.scale


@register_unit
@dataclass(frozen=True)
class ScaledConv(Unit):
    """A unit kind defined outside the library: a 3x3 conv + BN + ReLU times a constant."""

    out_channels: int
    scale: float = 2.0
    type = "test_scaled_conv"
    obs_kind = "conv"

    def infer(self, inp):
        c, h, w = self.maps_input(inp)
        return (self.out_channels, h, w), 9 * c * self.out_channels + 2 * self.out_channels, \
            2 * 9 * c * self.out_channels * h * w

    def module(self, c_in):
        return ScaledConvUnit(c_in, self)

    def output_tie(self, inp):
        return NEW

    @property
    def width(self):
        return self.out_channels

    def resized(self, out=None, inner=None):
        return self if out is None else dataclasses.replace(self, out_channels=out)

    def decision(self, ctx: DecisionContext):
        return UnitDecision(not ctx.first and ctx.inp[1:] == ctx.out[1:], "", self.out_channels)

    def inherit(self, dst, src, ports: Ports):
        copy_conv(dst.conv, src.conv, ports.out, ports.inputs(src.conv.weight))
        copy_bn(dst.bn, src.bn, ports.out)

    def importance(self, module):
        return {"": l1_out(module.conv.weight)}


def test_a_unit_kind_registered_outside_the_library_works_end_to_end():
    spec = NetSpec((Conv("c1", 16), ScaledConv("s1", 16), ScaledConv("s2", 16), GlobalPool("gap"), Linear("fc", 3)),
                   input_size=(8, 8))
    assert NetSpec.from_json(spec.to_json()) == spec  # JSON through the registry
    _costs_match(spec)
    table = {d.name: d for d in decision_table(spec)}
    assert table["s1"].removable and table["s1"].shrinkable and table["s1"].space == "s1"
    student_spec = apply_decisions(spec, {"s1": 0.5, "s2": REMOVE})
    assert student_spec.unit("s1").out_channels == 8 and "s2" not in student_spec.names
    teacher = build(spec).eval()
    student = inherit(teacher, spec, student_spec).eval()
    assert student(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    full = inherit(teacher, spec, apply_decisions(spec, {})).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(full(x), teacher(x))


def test_unknown_unit_type_and_twice_registered_kinds_are_clear_errors():
    with pytest.raises(SpecError, match="unknown unit type 'nope'"):
        NetSpec.from_dict({"in_channels": 3, "input_size": [8, 8], "units": [{"type": "nope", "name": "x"}]})
    with pytest.raises(ValueError, match="registered twice"):
        register_unit(ScaledConv)


# ------------------------------------------------------------------------------- depthwise convs


def _depthwise_spec() -> NetSpec:
    return NetSpec((Conv("c1", 16), Conv("dw", 16, groups=16), Conv("pw", 32, kernel=1, padding=0), Pool("p"),
                    Conv("c3", 24), GlobalPool("gap"), Linear("fc", 5)), input_size=(8, 8))


def test_a_depthwise_conv_is_tied_to_its_input_channels():
    spec = _depthwise_spec()
    _costs_match(spec)
    table = {d.name: d for d in decision_table(spec)}
    assert table["stage1"].members == ("c1", "dw")  # the depthwise conv writes its producer's space
    assert not table["dw"].shrinkable and table["dw"].removable
    assert "c1" not in table or not table["c1"].shrinkable
    student_spec = apply_decisions(spec, {"stage1": 0.5})
    assert student_spec.unit("c1").out_channels == student_spec.unit("dw").out_channels == 8
    assert student_spec.unit("dw").groups == 8
    _costs_match(student_spec)
    teacher = build(spec).eval()
    student = inherit(teacher, spec, student_spec).eval()
    kept = torch.topk(l1_out(teacher.unit("c1").conv.weight) + l1_out(teacher.unit("dw").conv.weight), 8)\
        .indices.sort().values
    torch.testing.assert_close(student.unit("dw").conv.weight, teacher.unit("dw").conv.weight[kept])
    torch.testing.assert_close(student.unit("pw").conv.weight, teacher.unit("pw").conv.weight[:, kept])


def test_groups_other_than_one_or_depthwise_are_refused():
    with pytest.raises(SpecError, match="groups must be 1 or equal"):
        NetSpec((Conv("c1", 16), Conv("g", 16, groups=4), GlobalPool("gap"), Linear("fc", 2))).shapes()


def test_new_unit_fields_keep_the_old_hashes():
    # a plain conv's JSON has no 'groups' or 'relu6' (their defaults), so every spec hashed before them is unchanged
    assert "groups" not in Conv("c", 8).to_dict() and "relu6" not in Conv("c", 8).to_dict()
    assert resnet18().hash() == "3478a81b20a87b34"  # as hashed before the fields existed (the shipped table's)
    assert Conv("c", 8, groups=8).to_dict()["groups"] == 8


# ------------------------------------------------------------------------------- the model registry


def test_a_model_registered_outside_the_library_is_a_teacher_like_any_other():
    @register_model("test_tiny_vgg")
    def tiny(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (8, 8)) -> NetSpec:
        return NetSpec((Conv("c1", 8), Conv("c2", 16), GlobalPool("gap"), Linear("fc", num_classes)), in_channels,
                       input_size, "test_tiny_vgg")

    assert "test_tiny_vgg" in list_models() and get_model("test_tiny_vgg", num_classes=4).num_classes == 4
    with pytest.raises(ValueError, match="registered twice"):
        register_model("test_tiny_vgg")(tiny)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        get_model("nope")


# ------------------------------------------------------------------------------- the action codec


def test_codec_layout_index_and_labels():
    codec = ActionCodec((0.25, 0.5, 1.0), (("kernel_1x1", None),))
    assert codec.choices == (REMOVE, 0.25, 0.5, 1.0, Keep(0.25, kernel=1), Keep(0.5, kernel=1), Keep(1.0, kernel=1))
    assert codec.keep_action == 3 and codec.widths == (0.0, 0.25, 0.5, 1.0, 0.25, 0.5, 1.0)
    assert codec.index(Keep(0.5)) == 2 and codec.index(Keep(0.5, form="kernel_1x1")) == 5 and codec.index(0.5) == 2
    assert codec.label(5) == "width 0.5, kernel_1x1" and codec.label(0) == "remove"
    assert "4..6 = the same widths, kernel_1x1" in codec.layout()
    with pytest.raises(ValueError, match="not an action"):
        codec.index(0.3)


def test_codec_masks_and_nearest_action():
    spec = resnet18(input_size=(16, 16))
    codec = ActionCodec((0.25, 0.5, 1.0), (("kernel_1x1", None),))
    decisions = [d for d in decision_table(spec) if sum(codec.allowed(d)) > 1]
    masks = codec.masks(decisions)
    assert masks["joint"].shape == (len(decisions), len(codec))
    assert masks["removal"][:, codec.keep_action].all() and not masks["shrink"][:, 0].any()
    conv1 = [d.name for d in decisions].index("conv1")  # only its kernel: width and removal belong to stage1
    assert masks["joint"][conv1].tolist() == [False, False, False, True, False, False, True]
    assert codec.nearest(masks["joint"][conv1], 1, "joint") == 3  # width 0.25 asked: the allowed plain width
    assert codec.nearest(masks["joint"][conv1], 4, "joint") == 6  # 0.25 with 1x1: the same form first
    assert codec.nearest(masks["removal"][conv1], 2, "removal") == codec.keep_action


def test_codec_continuous_keep_ratio():
    codec = ActionCodec((0.25, 0.5, 0.75, 1.0))
    mask = np.array([True, True, True, True, True])
    assert codec.from_ratio(0.05, mask, remove_below=0.1) == 0
    assert codec.from_ratio(0.05, np.array([False, True, True, True, True]), remove_below=0.1) == 1
    assert codec.widths[codec.from_ratio(0.6, mask, remove_below=0.1)] == 0.5
    assert codec.widths[codec.from_ratio(0.625, mask, remove_below=0.1)] == 0.5  # a tie: the narrower
    assert codec.widths[codec.from_ratio(0.99, mask, remove_below=0.1)] == 1.0
    with pytest.raises(ValueError, match="finite"):
        codec.from_ratio(float("nan"), mask, remove_below=0.1)


def test_the_recorded_form_is_lossless_and_old_records_still_decode():
    spec = resnet18(input_size=(16, 16))
    codec = ActionCodec((0.25, 0.5, 0.7, 1.0), (("kernel_1x1", None),))
    decisions = [d for d in decision_table(spec) if sum(codec.allowed(d)) > 1]
    rng = random.Random(0)
    for _ in range(20):
        choices = {d.name: codec.choices[rng.choice(np.flatnonzero(codec.allowed(d)).tolist())] for d in decisions}
        recorded = codec.encode(choices)
        assert all(isinstance(t, str) for t in recorded.values())
        again = codec.decode(recorded)
        assert again == {k: (v if isinstance(v, (str, Keep)) else float(v)) for k, v in choices.items()}
        assert apply_decisions(spec, again).hash() == apply_decisions(spec, choices).hash()
    # the legacy form: widths (0.0 = removed) and kernel flags
    assert codec.decode({"a": 0.0, "b": 0.5, "c": 0.5}, {"c": True}) == {"a": REMOVE, "b": 0.5,
                                                                      "c": Keep(0.5, kernel=1)}
    assert parse(token(Keep(0.5, form="fire", param=0.25))) == Keep(0.5, form="fire", param=0.25)
    with pytest.raises(ActionError, match="not a recorded choice"):
        parse("wide")


def test_forms_are_checked_against_the_decision():
    spec = resnet18(input_size=(16, 16))
    with pytest.raises(ActionError, match="no kernel to shrink"):
        apply_decisions(spec, {"layer1.0": Keep(0.5, kernel=1)})
    with pytest.raises(ActionError, match="unknown form 'origami'"):
        apply_decisions(spec, {"layer1.0": Keep(0.5, form="origami")})


def test_with_channels_inverts_channel_counts_and_stale_batchnorms_follow_the_units():
    spec = _depthwise_spec()
    student_spec = apply_decisions(spec, {"stage1": 0.5, "pw": 0.5})
    assert with_channels(spec, channel_counts(student_spec)) == student_spec
    teacher = build(spec)
    student = inherit(teacher, spec, student_spec)
    # c1 narrower: its kept filters see the input, so its BN stays exact; everything after it is stale
    stale = stale_batchnorms(student, spec, student_spec)
    assert student.unit("c1").bn not in stale and student.unit("dw").bn in stale
