"""Tests for the teacher zoo and torchvision-layout weight import."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from ddc_env.arch import Block, Conv, GlobalPool, Linear, NetSpec, build
from ddc_env.models import (MODELS, detect_layout, get_model_spec, infer_resnet, load_state_dict,
                            load_torchvision_state_dict, resnet18, resnet34, resnet50, to_torchvision_state_dict,
                            torchvision_key_map)


def _randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with random BN affine parameters and running statistics (not just the init values)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def _torchvision_resnet(name: str, num_classes: int, stem: str) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    return _randomised(model)


@pytest.mark.parametrize("name, stem, size", [("resnet18", "cifar", 32), ("resnet18", "imagenet", 64),
                                              ("resnet50", "imagenet", 32)])
def test_torchvision_import_computes_the_same_function(name: str, stem: str, size: int) -> None:
    tv = _torchvision_resnet(name, 7, stem)
    spec = get_model_spec(name, num_classes=7, input_size=(size, size), stem=stem)
    net = load_torchvision_state_dict(spec, tv.state_dict()).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = tv(x), net(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert expected.std() > 0.1  # a non-degenerate comparison


def test_round_trip_to_torchvision_layout() -> None:
    spec = resnet18(num_classes=5)
    net = _randomised(build(spec))
    tv = _torchvision_resnet("resnet18", 5, "cifar")
    tv.load_state_dict(to_torchvision_state_dict(net))  # strict
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tv(x), net(x), atol=1e-5, rtol=1e-5)
    back = load_torchvision_state_dict(spec, tv.state_dict())
    for key, value in net.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_key_map_renames_stem_and_classifier_only() -> None:
    mapping = torchvision_key_map(resnet18())
    assert mapping["units.conv1.conv.weight"] == "conv1.weight"
    assert mapping["units.conv1.bn.running_var"] == "bn1.running_var"
    assert mapping["units.layer2_0.downsample.0.weight"] == "layer2.0.downsample.0.weight"
    assert mapping["units.fc.fc.bias"] == "fc.bias"
    assert set(mapping.values()) == set(_torchvision_resnet("resnet18", 10, "cifar").state_dict())


def test_num_classes_mismatch_names_keys_and_shapes() -> None:
    tv = _torchvision_resnet("resnet18", 10, "cifar")
    with pytest.raises(ValueError) as e:
        load_torchvision_state_dict(resnet18(num_classes=100), tv.state_dict())
    msg = str(e.value)
    assert "fc.weight: expected (100, 512) got (10, 512)" in msg and "fc.bias" in msg


def test_missing_and_unexpected_keys_are_listed() -> None:
    sd = dict(_torchvision_resnet("resnet18", 10, "cifar").state_dict())
    del sd["layer3.1.bn2.running_mean"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \(1\): layer3.1.bn2.running_mean.*unexpected keys "
                                         r"\(1\): extra.weight"):
        load_torchvision_state_dict(resnet18(), sd)


def test_imagenet_stem_weights_do_not_fit_cifar_spec() -> None:
    tv = _torchvision_resnet("resnet18", 10, "imagenet")
    with pytest.raises(ValueError, match=r"conv1.weight: expected \(64, 3, 3, 3\) got \(64, 3, 7, 7\)"):
        load_torchvision_state_dict(resnet18(), tv.state_dict())


def test_layout_detection_and_loading_either_layout() -> None:
    spec = NetSpec((Conv("conv1", 8), Block("layer1.0", 8, 8), Block("layer2.0", 16, 16, 2, "projection"),
                    GlobalPool("avgpool"), Linear("fc", 3)), input_size=(8, 8))
    net = _randomised(build(spec))
    ours, theirs = net.state_dict(), to_torchvision_state_dict(net)
    assert detect_layout(ours) == "ddc" and detect_layout(theirs) == "torchvision"
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for sd in (ours, theirs):
            torch.testing.assert_close(load_state_dict(spec, sd).eval()(x), net(x))
    with pytest.raises(ValueError, match="unrecognised state dict layout"):
        detect_layout({"features.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing keys"):
        load_state_dict(spec, {k: v for k, v in ours.items() if "fc" not in k})


@pytest.mark.parametrize("name, stem", [("resnet18", "cifar"), ("resnet34", "imagenet"), ("resnet50", "cifar")])
def test_infer_resnet_from_state_dict(name: str, stem: str) -> None:
    with torch.device("meta"):
        sd = to_torchvision_state_dict(build(get_model_spec(name, num_classes=13, stem=stem)))
    assert infer_resnet(sd) == (name, {"num_classes": 13, "in_channels": 3, "stem": stem})
    with pytest.raises(ValueError, match="none of"):
        infer_resnet({k: v for k, v in sd.items() if not k.startswith("layer4.1.")})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_builders_build_and_count_params(name: str) -> None:
    spec = MODELS[name](num_classes=6)
    net = build(spec)
    assert spec.arch == name
    assert spec.params == sum(p.numel() for p in net.parameters())
    x = torch.randn(2, spec.in_channels, *spec.input_size, device="meta")
    assert net.to("meta")(x).shape == (2, 6)  # shapes only: the forward pass runs on the meta device


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet99'; available: .*resnet18"):
        get_model_spec("resnet99")


def test_resnet_param_counts_match_torchvision() -> None:
    for builder, tv in ((resnet18, torchvision.models.resnet18), (resnet34, torchvision.models.resnet34),
                        (resnet50, torchvision.models.resnet50)):
        with torch.device("meta"):
            expected = sum(p.numel() for p in tv(num_classes=1000).parameters())
        assert builder(num_classes=1000, stem="imagenet").params == expected
