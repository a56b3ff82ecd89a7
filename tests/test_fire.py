"""SqueezeNet's Fire module as a form of a conv: costs, where it is offered, the codec's actions, and inheritance by a
low-rank factorisation (exact for the kxk expand at full rank)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddc_env.arch import Conv, GlobalPool, Keep, Linear, NetSpec, Pool, apply_decisions, build, decision_table, inherit
from ddc_env.task import Task
from nets import randomise_bn


def _vgg_like() -> NetSpec:
    return NetSpec((Conv("c1", 16), Conv("c2", 16), Pool("p"), Conv("c3", 32), GlobalPool("gap"), Linear("fc", 4)),
                   input_size=(8, 8))


def test_fire_is_offered_on_convs_with_their_own_width_after_the_first():
    table = {d.name: d for d in decision_table(_vgg_like())}
    assert "fire" not in table["c1"].forms and "fire" in table["c2"].forms and "fire" in table["c3"].forms


def test_a_fire_student_has_the_costs_of_its_module():
    spec = apply_decisions(_vgg_like(), {"c2": Keep(1.0, form="fire", param=0.5), "c3": Keep(0.5, form="fire")})
    fire = spec.unit("c2")
    assert fire.type == "fire" and fire.squeeze_channels == 8 and fire.out_channels == 16
    assert spec.unit("c3").squeeze_channels == 4  # the default squeeze ratio 0.25 of 16 channels
    net = build(spec).eval()
    assert spec.params == sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 8, 8))
    assert spec.flops == counter.get_total_flops()
    assert spec.params < _vgg_like().params


def test_the_kxk_expand_inherits_exactly_at_full_rank_and_the_consumer_follows_the_order():
    spec = _vgg_like()
    teacher = build(spec).eval()
    randomise_bn(teacher)
    student_spec = apply_decisions(spec, {"c2": Keep(1.0, form="fire", param=1.0)})  # squeeze 16 >= 16 inputs
    student = inherit(teacher, spec, student_spec).eval()
    x = torch.randn(2, 16, 8, 8)
    fire, conv = student.unit("c2"), teacher.unit("c2").conv
    with torch.no_grad():
        kxk = fire.expandkxk(fire.squeeze(x))
        full = conv(x)
    order = _order(fire, teacher)
    torch.testing.assert_close(kxk, full[:, order[8:]], rtol=1e-4, atol=1e-4)
    # the consumer's input channels follow the Fire's output order
    torch.testing.assert_close(student.unit("c3").conv.weight, teacher.unit("c3").conv.weight[:, order])
    torch.testing.assert_close(fire.bn.running_mean, teacher.unit("c2").bn.running_mean[order])


def _order(fire: torch.nn.Module, teacher: torch.nn.Module) -> list[int]:
    """The teacher filters behind the Fire's outputs, read off its BatchNorm (a permutation of all 16)."""
    means = teacher.unit("c2").bn.running_mean.tolist()
    order = [means.index(m) for m in fire.bn.running_mean.tolist()]
    assert sorted(order) == list(range(16)) and order[:8] == sorted(order[:8]) and order[8:] == sorted(order[8:])
    return order


def test_the_codec_offers_fire_actions_when_the_task_asks_for_them():
    task = Task(_vgg_like(), "t", "d", "toy", width_choices=(0.5, 1.0), forms={"fire": 0.5})
    assert task.action_choices[-2:] == (Keep(0.5, form="fire", param=0.5), Keep(1.0, form="fire", param=0.5))
    allowed = {d.name: task.allowed(d) for d in task.decisions}
    assert allowed["c2"][-2:] == [True, True] and allowed["c1"][-2:] == [False, False]
    assert task.codec.decode(task.codec.encode({"c2": task.action_choices[-1]})) == {"c2": task.action_choices[-1]}
    plain = Task(_vgg_like(), "t", "d", "toy", width_choices=(0.5, 1.0))
    assert len(plain.action_choices) == 3 and plain.key() != task.key()
