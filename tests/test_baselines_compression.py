"""Deep Compression (baselines.deep_compression) and post-training int8 quantization (baselines.quantize) on
the session's synthetic LeNet-5 teacher at smoke fidelity. Latency is measured at batch 1 on one thread:
cheap, and stable on a 2-core machine that other jobs share."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ddc_env.lab.baseline import BaselineConfig, run_baseline
from ddc_env.baselines.deep_compression import (decode, encode, fix_shared_weights, huffman_decode, huffman_encode,
                                        huffman_lengths, kmeans_1d, make_pruning_permanent, prune_magnitude,
                                        share_weights)
from ddc_env.baselines.quantize import quantize_int8
from ddc_env.arch import Block, Conv, GlobalPool, Linear, NetSpec, build
from ddc_env.store import ResultsStore

ENV_ID = "DDC-LeNet5-MNIST"


@pytest.fixture(scope="module")
def env_kwargs(synth_teacher, synth_dir) -> dict:
    return dict(model="lenet5", teacher=str(synth_teacher.path), dataset="synth", data_dir=str(synth_dir),
                fidelity="smoke", latency="measured", latency_batch_size=1, latency_threads=1, device="cpu")


def _run(name: str, env_kwargs: dict, out: Path, **kwargs) -> dict:
    return run_baseline(BaselineConfig(baseline=name, env_id=ENV_ID, env_kwargs=env_kwargs, kwargs=kwargs), out,
                        progress=False)


def _labels(run_dir: Path, method: str) -> list[str]:
    with ResultsStore(run_dir / "results.sqlite") as store:
        return [row["record"]["label"] for row in store.query(method=method)]


def _weight_keys(spec: NetSpec) -> list[str]:
    return [f"{name}.weight" for name, m in build(spec).named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.fixture(scope="module")
def dc_run(env_kwargs, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("deep_compression") / "run"
    return _run("deep_compression", env_kwargs, out, sparsity=0.8, k=[4], finetune_epochs=2), out


# ------------------------------------------------------------------------------------------ Huffman coding


def test_huffman_stream_has_the_computed_size_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    probabilities = 0.5 ** np.arange(1, 13)
    symbols = rng.choice(12, 5000, p=probabilities / probabilities.sum())
    counts = np.bincount(symbols, minlength=12)
    lengths = huffman_lengths(counts.tolist())
    data = huffman_encode(symbols, lengths)
    bits = int(np.asarray(lengths)[symbols].sum())
    assert len(data) == math.ceil(bits / 8)
    np.testing.assert_array_equal(huffman_decode(data, lengths, len(symbols)), symbols)
    # an optimal prefix code: complete (Kraft sum 1), mean length within one bit of the entropy
    assert sum(2.0 ** -n for n in lengths if n) == 1.0
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    assert entropy <= bits / len(symbols) < entropy + 1
    with pytest.raises(ValueError, match="truncated"):
        huffman_decode(data[:-2], lengths, len(symbols))


def test_huffman_single_symbol_and_empty_streams() -> None:
    symbols = np.full(13, 3)
    lengths = huffman_lengths(np.bincount(symbols, minlength=5).tolist())
    assert lengths == [0, 0, 0, 1, 0]
    data = huffman_encode(symbols, lengths)
    assert len(data) == 2  # 13 one-bit codes
    np.testing.assert_array_equal(huffman_decode(data, lengths, 13), symbols)
    assert huffman_lengths([0, 0]) == [0, 0]
    assert huffman_encode(np.zeros(0, np.int64), [1, 0]) == b""
    assert len(huffman_decode(b"", [1, 0], 0)) == 0


@pytest.mark.parametrize("huffman", [True, False])
def test_encode_decode_is_exact_with_long_gaps(synth_teacher, huffman: bool) -> None:
    spec = synth_teacher.spec
    state = dict(synth_teacher.net.state_dict())  # its weights replaced below, the teacher's left as they are
    rng = np.random.default_rng(1)
    for key in _weight_keys(spec):
        flat = torch.zeros(state[key].numel())
        kept = rng.choice(flat.numel(), flat.numel() // 10, replace=False)
        kept = kept[(kept < 20) | (kept > 600)]  # a gap longer than 8-bit (conv) and 5-bit (fc) differences
        flat[kept] = torch.tensor([-0.5, 0.25, 1.5])[torch.from_numpy(rng.integers(0, 3, len(kept)))]
        state[key] = flat.reshape(state[key].shape)
    blob, sizes = encode(state, spec, huffman=huffman)
    assert sizes["compressed_bytes"] == len(blob) and sizes["filler_entries"] > 0
    assert sizes["codebook_bytes"] == sum(4 * len(torch.unique(state[k][state[k] != 0])) for k in _weight_keys(spec))
    assert (sizes["index_bits"] < sizes["index_bits_fixed"]) if huffman else \
        (sizes["index_bits"] == sizes["index_bits_fixed"] and sizes["huffman_table_bytes"] == 0)
    decoded = decode(blob, spec)
    assert decoded.keys() == state.keys()
    assert all(torch.equal(decoded[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="magic"):
        decode(b"x" + blob, spec)
    with pytest.raises(ValueError, match="truncated"):
        decode(blob[:-1], spec)


# ------------------------------------------------------------------------------------ pruning and sharing


def test_kmeans_1d_is_deterministic_and_finds_the_clusters() -> None:
    values = torch.cat([torch.full((50,), -1.0), torch.full((30,), 0.5), torch.full((20,), 2.0)])
    values = values + 0.01 * torch.randn(100, generator=torch.Generator().manual_seed(0))
    centroids, assign = kmeans_1d(values, 3)
    assert torch.allclose(centroids, torch.tensor([-1.0, 0.5, 2.0]), atol=0.01)
    assert torch.bincount(assign).tolist() == [50, 30, 20]
    again = kmeans_1d(values, 3)
    assert torch.equal(again[0], centroids) and torch.equal(again[1], assign)


def _train_steps(net: nn.Module, steps: int = 3) -> None:
    """A few SGD steps the way the env trains on CPUs with bf16: autocast + channels_last inputs."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 28, 28, generator=gen).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (32,), generator=gen)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    net.train()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_pruned_weights_stay_zero_through_fine_tuning_and_weight_sharing(synth_teacher) -> None:
    net = copy.deepcopy(synth_teacher.net).to(memory_format=torch.channels_last)
    modules = prune_magnitude(net, 0.8)
    _train_steps(net)
    make_pruning_permanent(modules)
    masks = [m.weight.detach() != 0 for m in modules]
    assert [int((~mask).sum()) for mask in masks] == [round(0.8 * mask.numel()) for mask in masks]

    shared = share_weights(net, 4)
    centroids = [m.parametrizations.weight[0].centroids.detach().clone() for m in shared]
    _train_steps(net)
    assert not all(torch.equal(c, m.parametrizations.weight[0].centroids) for c, m in zip(centroids, shared))
    fix_shared_weights(shared)
    for m, mask in zip(shared, masks):
        w = m.weight.detach()
        assert not parametrize.is_parametrized(m)
        assert torch.all(w[~mask] == 0)
        assert len(torch.unique(w[mask])) <= 4


# ------------------------------------------------------------------------------------- Deep Compression run


def test_deep_compression_stores_the_teacher_in_a_fifth_of_its_size(dc_run) -> None:
    summary, out = dc_run
    teacher_bytes = summary["teacher"]["size_bytes"]
    [result] = summary["results"]
    record = result["record"]
    blob = (out / result["bitstream"]).read_bytes()
    assert record["size_bytes"] == record["compressed_bytes"] == len(blob) < teacher_bytes / 5
    assert record["compression_ratio_storage"] == pytest.approx(teacher_bytes / len(blob))
    assert record["size_ratio"] == pytest.approx(len(blob) / teacher_bytes)
    parts = ("codebook_bytes", "huffman_table_bytes", "index_stream_bytes", "gap_stream_bytes", "dense_bytes",
             "header_bytes")
    assert sum(record[p] for p in parts) == len(blob)
    layers = len(_weight_keys(NetSpec.from_dict(record["spec"])))
    for stream in ("index", "gap"):  # each layer's Huffman stream is its codes' bits, padded to a byte
        assert 0 <= record[f"{stream}_stream_bytes"] - record[f"{stream}_bits"] / 8 < layers
        assert record[f"{stream}_bits"] < record[f"{stream}_bits_fixed"]
    assert record["k"] == 4 and record["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert record["flops"] == record["teacher_flops"] and record["latency_ms"] > 0
    assert 0.0 <= record["val_acc"] <= 1.0
    assert _labels(out, "baseline:deep_compression") == ["pruned_step1", "kmeans_k4", "deep_compression_k4"]
    assert {p.name for p in out.iterdir()} == {"config.yaml", "results.sqlite", "summary.json", "models", ".lock"}
    assert {p.name for p in (out / "models").iterdir()} == {f"deep_compression_k4.{ext}" for ext in ("bin", "json",
                                                                                                    "pt")}


def test_deep_compression_model_is_the_decoded_bitstream(dc_run, synth_teacher) -> None:
    summary, out = dc_run
    [result] = summary["results"]
    spec = NetSpec.from_json((out / result["model"]["spec"]).read_text())
    assert spec == synth_teacher.spec
    saved = torch.load(out / result["model"]["weights"], weights_only=True)
    decoded = decode(out / result["bitstream"], spec)
    assert saved.keys() == decoded.keys() and all(torch.equal(saved[k], decoded[k]) for k in saved)
    keys = _weight_keys(spec)
    kept = 0
    for key in keys:
        w = decoded[key]
        assert len(torch.unique(w[w != 0])) <= 4
        assert (w == 0).float().mean().item() == pytest.approx(0.8, abs=0.01)
        kept += int(torch.count_nonzero(w))
    assert result["record"]["params"] == spec.params - sum(decoded[k].numel() for k in keys) + kept


# ------------------------------------------------------------------------------------------------- int8


def _check_int8(summary: dict, out: Path, label: str) -> dict:
    [result] = summary["results"]
    record = result["record"]
    assert result["label"] == label and result["model"] == {"torchscript": f"models/{label}.ts"}
    assert record["precision"] == "int8" and record["size_bytes"] < 0.4 * record["fp32_size_bytes"]
    assert record["val_acc"] >= record["fp32_val_acc"] - 0.15
    assert record["latency_ms"] > 0 and record["fp32_latency_ms"] > 0
    assert record["int8_speedup"] == pytest.approx(record["fp32_latency_ms"] / record["latency_ms"])
    assert {p.name for p in out.iterdir()} == {"config.yaml", "results.sqlite", "summary.json", "models", ".lock"}
    scripted = torch.jit.load(out / result["model"]["torchscript"])
    logits = scripted(torch.randn(3, 1, 28, 28))
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()
    return record


def test_int8_fuses_residual_adds_and_global_pooling() -> None:
    spec = NetSpec((Conv("stem", 8), Block("block", 8, 8), Block("down", 16, 16, stride=2, shortcut="projection"),
                    GlobalPool("pool"), Linear("fc", 4)), in_channels=3, input_size=(16, 16))
    torch.manual_seed(0)
    net = build(spec).eval()
    x = torch.randn(64, 3, 16, 16)
    int8 = quantize_int8(net, x, "x86")
    assert int8.code.count("quantized.add_relu") == 2 and "adaptive_avg_pool2d" in int8.code
    assert int8.code.count(".dequantize()") == 1  # int8 from the input's quantization to the logits
    with torch.no_grad():
        error = (int8(x) - net(x)).abs().max() / net(x).abs().max()
    assert error < 0.1


def test_int8_teacher_is_smaller_and_about_as_accurate(env_kwargs, tmp_path) -> None:
    summary = _run("int8", env_kwargs, tmp_path / "run")
    record = _check_int8(summary, tmp_path / "run", "int8_teacher")
    assert record["fp32_size_bytes"] == summary["teacher"]["size_bytes"]
    assert record["fp32_val_acc"] >= 0.8  # the synthetic teacher is well above chance (0.25)
    assert record["calibration_images"] == 256  # the smoke fidelity's training split
    assert _labels(tmp_path / "run", "baseline:int8") == ["fp32_teacher", "int8_teacher"]


def test_int8_of_a_saved_model(env_kwargs, synth_teacher, tmp_path) -> None:
    spec_path = tmp_path / "student.json"
    spec_path.write_text(synth_teacher.spec.to_json())
    torch.save(synth_teacher.net.state_dict(), tmp_path / "student.pt")
    summary = _run("int8", env_kwargs, tmp_path / "run", model=str(spec_path), calibration_images=64,
                   backend="fbgemm")
    record = _check_int8(summary, tmp_path / "run", "int8_student")
    assert record["calibration_images"] == 64 and record["backend"] == "fbgemm"
    assert record["model"] == str(spec_path)


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name, kwargs, message", [
    ("deep_compression", {"sparsity": 1.5}, r"sparsity must be a finite number >= 0 and < 1, got 1.5"),
    ("deep_compression", {"k": 0}, r"k must be an integer in \[1, 65536\], got 0"),
    ("deep_compression", {"k": [16, 0]}, r"k must be an integer in \[1, 65536\], got 0"),
    ("deep_compression", {"k": []}, "k must be an integer or a non-empty list of integers"),
    ("deep_compression", {"prune_steps": 0}, "prune_steps must be a positive integer"),
    ("deep_compression", {"huffman": 1}, "huffman must be true or false"),
    ("int8", {"model": "no/such/best_student.json"}, "model must be 'teacher' or the path of an existing spec"),
    ("int8", {"backend": "arm"}, "unknown backend 'arm'; allowed"),
    ("int8", {"calibration_images": 0}, "calibration_images must be a positive integer"),
])
def test_bad_arguments_are_refused_before_anything_runs(env_kwargs, tmp_path, name: str, kwargs: dict,
                                                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _run(name, env_kwargs, tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()
