"""The network IR: specs, costs, decisions, building and teacher-weight inheritance."""
import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ddc_env.arch import (REMOVE, ActionError, Block, Conv, GlobalPool, Keep, Linear, NetSpec, Pool, SpecError,
                          apply_decisions, build, choices_from_widths, decision_table, inherit, recalibrate_batchnorm,
                          round_channels, uniform_choices)
from ddc_env.models import MODELS, lenet5, resnet18, vgg11
from nets import randomise_bn

SMALL = {  # zoo models at small input sizes keep the tests fast
    "resnet18": dict(input_size=(16, 16)),
    "resnet34": dict(input_size=(16, 16)),
    "resnet50": dict(input_size=(16, 16)),
    "vgg11": dict(input_size=(32, 32)),
    "vgg13": dict(input_size=(32, 32)),
    "vgg16": dict(input_size=(32, 32)),
    "vgg19": dict(input_size=(32, 32)),
    "lenet5": dict(),
    "mobilenet_v2": dict(input_size=(16, 16)),
}


def random_choices(spec: NetSpec, rng: random.Random, kernels: bool = False) -> dict:
    choices = {}
    for d in decision_table(spec):
        options = []
        if d.removable:
            options.append(REMOVE)
        if d.shrinkable:
            options += [0.25, 0.5, 0.7, 1.0]
        if kernels and d.kernel_shrinkable:
            options.append(Keep(1.0, kernel=1))
        if options:
            choices[d.name] = rng.choice(options)
    return choices


@pytest.mark.parametrize("name", sorted(MODELS))
def test_analytic_costs_match_built_module(name):
    spec = MODELS[name](**SMALL[name])
    net = build(spec).eval()
    assert spec.params == sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, spec.in_channels, *spec.input_size))
    assert spec.flops == counter.get_total_flops()


def test_json_round_trip_and_stable_hash():
    spec = resnet18()
    again = NetSpec.from_json(spec.to_json(indent=2))
    assert again == spec and again.hash() == spec.hash()
    assert resnet18().hash() == spec.hash()  # deterministic across constructions
    assert resnet18(num_classes=100).hash() != spec.hash()
    student = apply_decisions(spec, {"stage2": 0.5})
    assert student.hash() != spec.hash()
    assert NetSpec.from_json(student.to_json()).hash() == student.hash()


def test_malformed_specs_are_clear_errors():
    with pytest.raises(SpecError, match="unknown unit type"):
        NetSpec.from_dict({"in_channels": 3, "input_size": [8, 8], "units": [{"type": "lstm", "name": "x"}]})
    with pytest.raises(SpecError, match="does not parse"):
        NetSpec.from_json("{not json")
    with pytest.raises(SpecError, match="unique"):
        NetSpec((Conv("a", 8), Conv("a", 8)))
    with pytest.raises(SpecError, match="identity shortcut"):
        NetSpec((Conv("a", 8), Block("b", 16, 8)), input_size=(8, 8)).shapes()
    with pytest.raises(SpecError, match="vector input"):
        NetSpec((Conv("a", 8), Linear("fc", 10)), input_size=(8, 8)).shapes()


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg11", "lenet5"])
def test_full_width_student_computes_the_teachers_function(name):
    spec = MODELS[name](**SMALL[name])
    teacher = build(spec).eval()
    randomise_bn(teacher)
    keep_all = {d.name: 1.0 for d in decision_table(spec) if d.shrinkable}
    student_spec = apply_decisions(spec, keep_all)
    assert student_spec == spec
    student = inherit(teacher, spec, student_spec).eval()
    x = torch.randn(3, spec.in_channels, *spec.input_size)
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x), rtol=1e-5, atol=1e-5)


def test_decision_rules_on_resnet18():
    table = {d.name: d for d in decision_table(resnet18())}
    # one shared width per stage, covering the stem and the identity blocks it feeds
    assert table["stage1"].members == ("conv1", "layer1.0", "layer1.1")
    assert table["stage2"].members == ("layer2.0", "layer2.1")
    assert [n for n, d in table.items() if d.removable] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1",
                                                            "layer4.1"]
    assert not table["conv1"].shrinkable  # its width is stage1's
    assert "fc" not in table and "avgpool" not in table


def test_decision_rules_on_vgg_and_lenet():
    vgg = {d.name: d for d in decision_table(vgg11())}
    assert not vgg["features.0"].removable  # the first conv
    assert all(vgg[n].removable for n in vgg if n != "features.0")
    assert "classifier.1" not in vgg  # the classifier
    lenet = {d.name: d for d in decision_table(lenet5())}
    assert not lenet["conv2"].removable  # a 5x5 valid conv changes the spatial size
    assert lenet["fc1"].removable and lenet["fc2"].removable


def test_forbidden_choices_raise():
    spec = resnet18()
    with pytest.raises(ActionError, match="cannot be removed"):
        apply_decisions(spec, {"layer2.0": REMOVE})  # projection / stride-2 block
    with pytest.raises(ActionError, match="unknown decision"):
        apply_decisions(spec, {"fc": 0.5})
    with pytest.raises(ActionError, match="width must be"):
        apply_decisions(spec, {"stage1": 1.5})
    with pytest.raises(ActionError, match="cannot be shrunk"):
        apply_decisions(spec, {"conv1": 0.5})
    with pytest.raises(ActionError, match="no kernel"):
        apply_decisions(spec, {"layer1.0": Keep(0.5, kernel=1)})
    with pytest.raises(ActionError, match="unknown choice"):
        apply_decisions(spec, {"layer1.0": "drop"})


def test_channel_rounding():
    assert round_channels(64, 0.25) == 16
    assert round_channels(64, 0.6) == 40  # 38.4 -> nearest multiple of 8
    assert round_channels(64, 0.01) == 8  # floor of min_channels
    assert round_channels(6, 0.5) == 3  # 6 is no multiple of 8: rounded to 1
    assert round_channels(16, 0.25) == 8
    assert round_channels(100, 1.0) == 100
    student = apply_decisions(resnet18(), {"stage1": 0.6, "layer1.0": 0.3})
    assert student.unit("conv1").out_channels == 40
    assert student.unit("layer1.1").out_channels == 40
    assert student.unit("layer1.0").mid_channels == 16  # 19.2 -> 16


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg11", "lenet5"])
def test_random_decisions_always_give_valid_inheritable_students(name):
    spec = MODELS[name](**SMALL[name])
    teacher = build(spec).eval()
    rng = random.Random(0)
    x = torch.randn(2, spec.in_channels, *spec.input_size)
    for _ in range(8):
        student_spec = apply_decisions(spec, random_choices(spec, rng, kernels=True))
        assert student_spec.params <= spec.params
        student = inherit(teacher, spec, student_spec).eval()
        assert sum(p.numel() for p in student.parameters()) == student_spec.params
        assert student(x).shape == (2, spec.num_classes)


def test_recorded_widths_rebuild_the_same_student():
    spec = MODELS["resnet18"](**SMALL["resnet18"])
    rng = random.Random(1)
    for _ in range(8):
        choices = random_choices(spec, rng, kernels=True)
        widths = {name: 0.0 if c == REMOVE else c.width if isinstance(c, Keep) else c for name, c in choices.items()}
        kernel_1x1 = {name: isinstance(c, Keep) for name, c in choices.items()}
        rebuilt = choices_from_widths(widths, kernel_1x1)
        assert rebuilt == choices
        assert apply_decisions(spec, rebuilt).hash() == apply_decisions(spec, choices).hash()
    assert choices_from_widths({"a": 0.0, "b": 0.5}) == {"a": REMOVE, "b": 0.5}


def test_resnet18_reaches_far_past_the_n2n_parameter_ceiling():
    spec = resnet18()
    smallest = {d.name: (REMOVE if d.removable else 0.25) for d in decision_table(spec) if d.shrinkable}
    assert spec.params / apply_decisions(spec, smallest).params > 6.46 * 3


def test_kernel_shrink_keeps_the_centre_tap():
    spec = NetSpec((Conv("c1", 8), Conv("c2", 8), GlobalPool("gap"), Linear("fc", 3)), input_size=(8, 8))
    teacher = build(spec).eval()
    student_spec = apply_decisions(spec, {"c2": Keep(1.0, kernel=1)})
    assert student_spec.unit("c2").kernel == 1 and student_spec.unit("c2").padding == 0
    student = inherit(teacher, spec, student_spec)
    torch.testing.assert_close(student.unit("c2").conv.weight, teacher.unit("c2").conv.weight[:, :, 1:2, 1:2])


def test_shrunk_channels_are_the_largest_l1_filters_and_inputs_follow():
    spec = NetSpec((Conv("c1", 8), Conv("c2", 8), GlobalPool("gap"), Linear("fc", 3)), input_size=(8, 8))
    teacher = build(spec)
    with torch.no_grad():  # filter i of c1 has L1 norm proportional to a known order
        order = torch.tensor([5, 0, 7, 2, 6, 1, 4, 3], dtype=torch.float)
        teacher.unit("c1").conv.weight.copy_(torch.ones_like(teacher.unit("c1").conv.weight) * order[:, None, None,
                                                                                                     None])
    student = inherit(teacher, spec, apply_decisions(spec, {"c1": 0.5}, channel_round=1, min_channels=1))
    kept = [0, 2, 4, 6]  # the four largest values 5, 7, 6, 4, in original order
    torch.testing.assert_close(student.unit("c1").conv.weight, teacher.unit("c1").conv.weight[kept])
    torch.testing.assert_close(student.unit("c2").conv.weight, teacher.unit("c2").conv.weight[:, kept])


def test_removed_units_consumer_adapts():
    spec = vgg11(input_size=(32, 32))
    teacher = build(spec).eval()
    student_spec = apply_decisions(spec, {"features.2": REMOVE, "features.4": REMOVE, "classifier.0": REMOVE})
    assert "features.2" not in student_spec.names
    student = inherit(teacher, spec, student_spec).eval()
    # features.5 now reads features.0's 64 channels instead of features.4's 256
    assert student.unit("features.5").conv.weight.shape[1] == 64
    assert student.unit("classifier.1").fc.weight.shape == (10, 512)
    assert student(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_removed_identity_blocks_become_nothing():
    spec = resnet18(input_size=(16, 16))
    teacher = build(spec).eval()
    randomise_bn(teacher)
    student_spec = apply_decisions(spec, {"layer1.0": REMOVE, "layer3.1": REMOVE})
    student = inherit(teacher, spec, student_spec).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():  # the student is exactly the teacher with those two blocks skipped
        h = x
        for name, module in teacher.units.items():
            if name not in ("layer1_0", "layer3_1"):
                h = module(h)
        torch.testing.assert_close(student(x), h)


def test_class_subset_keeps_those_classifier_rows():
    spec = resnet18(input_size=(16, 16))
    teacher = build(spec).eval()
    student_spec = apply_decisions(spec, {}, class_indices=(0, 1, 8, 9))
    assert student_spec.num_classes == 4
    student = inherit(teacher, spec, student_spec, class_indices=(0, 1, 8, 9)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x)[:, [0, 1, 8, 9]])


def _pattern_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 learnable classes of 16x16 RGB images: a bright bar (row, column or diagonal) plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.6
    pos = torch.randint(2, 14, (n,), generator=g)
    idx = torch.arange(16)
    for i in range(n):
        p = int(pos[i])
        if y[i] == 0:
            x[i, :, p] += 2.0
        elif y[i] == 1:
            x[i, :, :, p] += 2.0
        elif y[i] == 2:
            x[i, :, idx, idx] += 2.0
        else:
            x[i, :, idx, 15 - idx] += 2.0
    return x, y


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


def test_inherited_student_is_far_more_accurate_than_random_init():
    torch.manual_seed(0)
    spec = NetSpec((Conv("c1", 32), Conv("c2", 64), Pool("p1"), Conv("c3", 64), Conv("c4", 64), GlobalPool("gap"),
                    Linear("fc", 4)), input_size=(16, 16))
    x, y = _pattern_data(768, seed=1)
    xv, yv = _pattern_data(256, seed=2)
    teacher = build(spec)
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    for epoch in range(4):
        for i in range(0, len(x), 64):
            teacher.train()
            loss = nn.functional.cross_entropy(teacher(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    teacher_acc = _accuracy(teacher, xv, yv)
    assert teacher_acc > 0.9

    student_spec = apply_decisions(spec, uniform_choices(spec, 0.5))
    inherited = inherit(teacher, spec, student_spec)
    recalibrate_batchnorm(inherited, (x[i:i + 128] for i in range(0, len(x), 128)))
    random_init = build(student_spec)
    recalibrate_batchnorm(random_init, (x[i:i + 128] for i in range(0, len(x), 128)))
    inherited_acc, random_acc = _accuracy(inherited, xv, yv), _accuracy(random_init, xv, yv)
    assert inherited_acc > 0.8, inherited_acc
    assert inherited_acc > random_acc + 0.4, (inherited_acc, random_acc)


def test_recalibrate_batchnorm_matches_batch_statistics():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    x = torch.randn(64, 3, 8, 8) * 3 + 1
    seen = recalibrate_batchnorm(net, [x[:32], x[32:]])
    assert seen == 64 and not net.training
    with torch.no_grad():
        h = net[0](x)
    torch.testing.assert_close(net[1].running_mean, h.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert net[1].momentum == 0.1
