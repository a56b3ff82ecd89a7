"""Deep Compression (Han, Mao & Dally, "Deep Compression: Compressing Deep Neural Networks with Pruning,
Trained Quantization and Huffman Coding", ICLR 2016) on the env's teacher.

1. Pruning: every Conv2d/Linear weight loses the ``sparsity`` fraction of its smallest-magnitude entries
   (the same fraction per layer, reached over ``prune_steps`` equal steps; ``torch.nn.utils.prune``'s
   ``l1_unstructured``), the network is KD fine-tuned with the masks applied, then the masks are made
   permanent. The paper thresholds each layer at a quality factor times its weights' std; a per-layer
   fraction is the same rule with the threshold chosen to hit a target sparsity.
2. Trained quantization: the non-zero weights of each layer are clustered into ``k`` shared values by
   1-D k-means with the paper's linear initialisation (centroids evenly spaced over [min, max]; Lloyd
   iterations until the assignment is stable, deterministic). Each weight becomes ``centroids[index]``
   (a parametrization, so every forward rebuilds the weights); the gradient of a centroid is the sum of the
   gradients of the weights sharing it, the paper's centroid fine-tuning rule, divided by the cluster's size
   (see :class:`SharedWeights`), and pruned weights stay 0.
   One model per value of ``k``, each KD fine-tuned from the same pruned network.
3. Storage, written to ``models/<label>.bin`` and read back by :func:`decode`: per layer, the kept
   positions as relative index differences (``INDEX_BITS``: 8-bit for conv and 5-bit for fc layers, as in
   the paper; a gap too long for the field is bridged by filler entries that decode to 0), the cluster
   index of each entry (filler entries use the extra index ``k``), and the codebook as float32. With
   ``huffman`` the index differences and cluster indices are canonical-Huffman coded per layer (code
   lengths stored as one byte per symbol), else packed with fixed widths. Biases, BatchNorm parameters and
   statistics are stored dense as float32 (int64 for ``num_batches_tracked``). The recorded size is the
   length of that file, header and tables included; the recorded model is the one decoded from it.

   File layout (little-endian): ``MAGIC``, one byte (1 = Huffman), then each tensor of
   ``build(spec).state_dict()`` in order (names and shapes come from the spec, so decoding needs it). A
   Conv2d/Linear weight is: uint32 ``k`` (its distinct non-zero values), uint32 ``entries``, the ``k``
   sorted float32 values; then for the cluster indices (alphabet ``k + 1``) and the index differences
   (alphabet ``2 ** bits``) each: [code lengths, one byte per symbol, Huffman only], uint32 byte length,
   the bitstream. Any other tensor is its raw bytes.

Latency and FLOPs: the decoded network is dense float32 with zeros, and neither unstructured sparsity nor
weight sharing speeds up dense CPU kernels, so its latency is measured as is (about the teacher's) and its
FLOPs are the teacher's; the gain is storage only. ``params`` counts the non-zero weights plus the dense
parameters.
"""
from __future__ import annotations

import copy
import heapq
import math
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from ddc_env.arch import NetSpec, build
from ddc_env.paths import atomic_write_bytes
from ddc_env.validate import check_bool, check_int, check_number

from .common import Context

MAGIC = b"DDCDC1"
INDEX_BITS = {nn.Conv2d: 8, nn.Linear: 5}  # width of a relative index difference (Han et al., Sec. 2)
KMEANS_MAX_ITERS = 100


@dataclass(frozen=True)
class Kwargs:
    """``sparsity``: fraction of the weights of every conv/linear layer pruned; ``prune_steps``: prune +
    fine-tune steps to reach it; ``finetune_epochs``: KD epochs after each prune step and after clustering
    (None = the fidelity's); ``k``: shared values per layer, one final model per entry; ``huffman``:
    Huffman-code the index differences and cluster indices (else fixed-width)."""

    sparsity: float = 0.8
    prune_steps: int = 1
    finetune_epochs: int | None = None
    k: tuple[int, ...] = (16,)
    huffman: bool = True

    def __post_init__(self) -> None:
        check_number(self.sparsity, "sparsity", minimum=0.0, maximum=1.0, exclusive_maximum=True)
        check_int(self.prune_steps, "prune_steps", minimum=1)
        check_int(self.finetune_epochs, "finetune_epochs", optional=True)
        ks = [self.k] if isinstance(self.k, int) and not isinstance(self.k, bool) else self.k
        if not isinstance(ks, (list, tuple)) or not ks:
            raise ValueError(f"k must be an integer or a non-empty list of integers, got {self.k!r}")
        ks = tuple(check_int(k, "k", minimum=1, maximum=2 ** 16) for k in ks)
        if len(set(ks)) != len(ks):
            raise ValueError(f"k must not repeat a value (one result per k), got {self.k!r}")
        object.__setattr__(self, "k", ks)
        check_bool(self.huffman, "huffman")


# ------------------------------------------------------------------------------------------ Huffman coding


def huffman_lengths(counts: Sequence[int]) -> list[int]:
    """Huffman code length of each symbol from its count (0 for unused symbols; a lone symbol gets 1 bit).
    Ties merge in a fixed order, so the code is deterministic."""
    lengths = [0] * len(counts)
    nodes = [(int(c), s, [s]) for s, c in enumerate(counts) if c > 0]
    if len(nodes) == 1:
        lengths[nodes[0][1]] = 1
        return lengths
    heapq.heapify(nodes)
    order = len(counts)  # merged nodes get tie-break keys after every symbol's
    while len(nodes) > 1:
        c1, _, s1 = heapq.heappop(nodes)
        c2, _, s2 = heapq.heappop(nodes)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(nodes, (c1 + c2, order, s1 + s2))
        order += 1
    return lengths


def canonical_codes(lengths: Sequence[int]) -> list[int]:
    """The canonical Huffman code of each symbol given the code lengths (codes of one length are consecutive
    integers, shorter codes first, ties by symbol), so the lengths alone describe the code."""
    codes = [0] * len(lengths)
    code = prev = 0
    for s in sorted((s for s, n in enumerate(lengths) if n), key=lambda s: (lengths[s], s)):
        code <<= lengths[s] - prev
        codes[s], prev = code, lengths[s]
        code += 1
    return codes


def pack_codes(values: np.ndarray, widths: np.ndarray, chunk: int = 1 << 20) -> bytes:
    """Concatenate the ``widths[i]``-bit big-endian codes ``values[i]`` into a bitstream, zero-padded to a
    whole byte."""
    bits = []
    for s in range(0, len(values), chunk):
        v, w = values[s:s + chunk].astype(np.uint64), widths[s:s + chunk].astype(np.int64)
        owner = np.repeat(np.arange(len(w)), w)
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(w) - w, w)
        shift = (w[owner] - 1 - offset).astype(np.uint64)
        bits.append(((v[owner] >> shift) & np.uint64(1)).astype(np.uint8))
    return np.packbits(np.concatenate(bits)).tobytes() if bits else b""


def unpack_fixed(data: bytes, width: int, count: int) -> np.ndarray:
    """The ``count`` ``width``-bit codes at the start of ``data`` (the inverse of :func:`pack_codes` with
    equal widths)."""
    if count == 0:
        return np.zeros(0, np.int64)
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[:count * width].reshape(count, width)
    return bits.astype(np.int64) @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def huffman_encode(symbols: np.ndarray, lengths: Sequence[int]) -> bytes:
    """The bitstream of ``symbols`` in the canonical Huffman code of ``lengths``."""
    codes = np.asarray(canonical_codes(lengths), np.uint64)
    return pack_codes(codes[symbols], np.asarray(lengths, np.int64)[symbols])


def huffman_decode(data: bytes, lengths: Sequence[int], count: int) -> np.ndarray:
    """The first ``count`` symbols of a canonical Huffman bitstream: bit by bit, a code of length ``n`` is
    found when it lies among the ``n``-bit codes, which are consecutive integers (as in zlib's puff.c)."""
    out = np.empty(count, np.int64)
    if count == 0:
        return out
    max_length = max(lengths, default=0)
    per_length = [0] * (max_length + 1)
    for n in lengths:
        if n:
            per_length[n] += 1
    ordered = sorted((s for s, n in enumerate(lengths) if n), key=lambda s: (lengths[s], s))
    i = code = first = index = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            if length == max_length:
                raise ValueError("invalid Huffman bitstream: no code matches")
            code |= (byte >> shift) & 1
            length += 1
            n = per_length[length]
            if code - first < n:
                out[i] = ordered[index + code - first]
                i += 1
                if i == count:
                    return out
                code = first = index = length = 0
            else:
                index += n
                first = (first + n) << 1
                code <<= 1
    raise ValueError(f"truncated Huffman bitstream: {i} of {count} symbols decoded")


# -------------------------------------------------------------------------------------------- file format


def _index_bits(m: nn.Module) -> int:
    """Bits of the relative index differences of a Conv2d/Linear layer (0 for other modules)."""
    return next((bits for cls, bits in INDEX_BITS.items() if isinstance(m, cls)), 0)


def _compressed_layers(net: nn.Module) -> dict[str, int]:
    """State-dict key of each Conv2d/Linear weight -> bits of its relative index differences."""
    return {f"{name}.weight": _index_bits(m) for name, m in net.named_modules() if _index_bits(m)}


def _encode_stream(symbols: np.ndarray, alphabet: int, huffman: bool) -> tuple[bytes, bytes, int]:
    """(Huffman table, bitstream, bits of the codes) of ``symbols`` in ``range(alphabet)``; without Huffman
    the table is empty and every code is ceil(log2(alphabet)) bits wide."""
    if huffman:
        lengths = huffman_lengths(np.bincount(symbols, minlength=alphabet).tolist())
        return bytes(lengths), huffman_encode(symbols, lengths), int(np.asarray(lengths)[symbols].sum())
    width = max(1, math.ceil(math.log2(alphabet)))
    return b"", pack_codes(symbols, np.full(len(symbols), width)), width * len(symbols)


def _encode_layer(weight: np.ndarray, bits: int, huffman: bool) -> tuple[list[bytes], dict[str, int]]:
    """The records of one shared-weight layer (header, codebook, index and gap streams) and their sizes."""
    flat = weight.reshape(-1)
    positions = np.flatnonzero(flat)
    codebook = np.unique(flat[positions]).astype(np.float32)
    clusters = np.searchsorted(codebook, flat[positions])
    gaps = np.diff(positions, prepend=-1) - 1
    span = 1 << bits  # positions one filler entry advances: the longest gap plus itself
    fillers = gaps // span
    entries = int((fillers + 1).sum())
    gap_symbols = np.full(entries, span - 1, np.int64)
    index_symbols = np.full(entries, len(codebook), np.int64)  # the filler's index decodes to 0
    last = np.cumsum(fillers + 1) - 1
    gap_symbols[last] = gaps - fillers * span
    index_symbols[last] = clusters
    index_table, index_stream, index_bits = _encode_stream(index_symbols, len(codebook) + 1, huffman)
    gap_table, gap_stream, gap_bits = _encode_stream(gap_symbols, span, huffman)
    parts = [struct.pack("<II", len(codebook), entries), codebook.tobytes(),
             index_table, struct.pack("<I", len(index_stream)), index_stream,
             gap_table, struct.pack("<I", len(gap_stream)), gap_stream]
    sizes = {"kept_weights": len(positions), "filler_entries": entries - len(positions),
             "codebook_bytes": codebook.nbytes, "huffman_table_bytes": len(index_table) + len(gap_table),
             "index_stream_bytes": len(index_stream), "gap_stream_bytes": len(gap_stream),
             "index_bits": index_bits, "gap_bits": gap_bits,
             "index_bits_fixed": entries * max(1, math.ceil(math.log2(len(codebook) + 1))),
             "gap_bits_fixed": entries * bits}
    return parts, sizes


def encode(state_dict: Mapping[str, torch.Tensor], spec: NetSpec, *, huffman: bool = True
           ) -> tuple[bytes, dict[str, int]]:
    """The Deep Compression file of ``state_dict`` (a network of ``spec``) and a breakdown of its bytes.

    Every Conv2d/Linear weight is stored sparse with a codebook of its distinct non-zero values (k after
    weight sharing), everything else dense; see the module docstring for the layout."""
    template = build(spec)
    layers = _compressed_layers(template)
    parts = [MAGIC, bytes([huffman])]
    totals: dict[str, int] = {"dense_bytes": 0, "layer_weights": 0}
    for key, like in template.state_dict().items():
        value = state_dict[key].detach().cpu()
        if value.shape != like.shape or value.dtype != like.dtype:
            raise ValueError(f"{key}: expected {like.dtype} {tuple(like.shape)}, got {value.dtype} "
                             f"{tuple(value.shape)}")
        if key in layers:
            layer_parts, sizes = _encode_layer(value.contiguous().numpy(), layers[key], huffman)
            parts += layer_parts
            totals["layer_weights"] += value.numel()
            for name, n in sizes.items():
                totals[name] = totals.get(name, 0) + n
        else:
            data = value.contiguous().numpy().tobytes()
            parts.append(data)
            totals["dense_bytes"] += len(data)
    blob = b"".join(parts)
    payload = sum(totals[n] for n in ("codebook_bytes", "huffman_table_bytes", "index_stream_bytes",
                                      "gap_stream_bytes", "dense_bytes"))
    return blob, {**totals, "compressed_bytes": len(blob), "header_bytes": len(blob) - payload}


class _Reader:
    """Sequential reads from a bytes object, with a clear error when it ends too early."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"truncated Deep Compression file: {n} bytes wanted at offset {self.pos}")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def unpack(self, fmt: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def _decode_stream(reader: _Reader, alphabet: int, count: int, huffman: bool) -> np.ndarray:
    table = list(reader.take(alphabet)) if huffman else None
    stream = reader.take(reader.unpack("<I")[0])
    if table is not None:
        return huffman_decode(stream, table, count)
    return unpack_fixed(stream, max(1, math.ceil(math.log2(alphabet))), count)


def decode(source: bytes | str | Path, spec: NetSpec) -> dict[str, torch.Tensor]:
    """The state dict of a network of ``spec`` stored by :func:`encode` (a file path or its bytes)."""
    reader = _Reader(source if isinstance(source, bytes) else Path(source).read_bytes())
    if reader.take(len(MAGIC)) != MAGIC:
        raise ValueError("not a Deep Compression file (bad magic bytes)")
    huffman = bool(reader.take(1)[0])
    template = build(spec)
    layers = _compressed_layers(template)
    state: dict[str, torch.Tensor] = {}
    for key, like in template.state_dict().items():
        if key in layers:
            k, entries = reader.unpack("<II")
            codebook = np.frombuffer(reader.take(4 * k), np.float32)
            indices = _decode_stream(reader, k + 1, entries, huffman)
            gaps = _decode_stream(reader, 1 << layers[key], entries, huffman)
            positions = np.cumsum(gaps + 1) - 1
            if entries and positions[-1] >= like.numel():
                raise ValueError(f"{key}: positions run past the layer's {like.numel()} weights")
            flat = np.zeros(like.numel(), np.float32)
            flat[positions] = np.append(codebook, np.float32(0))[indices]
            state[key] = torch.from_numpy(flat).reshape(like.shape)
        else:
            data = reader.take(like.numel() * like.element_size())
            state[key] = torch.frombuffer(bytearray(data), dtype=like.dtype).reshape(like.shape)
    if reader.pos != len(reader.data):
        raise ValueError(f"{len(reader.data) - reader.pos} unexpected trailing bytes in the Deep Compression file")
    return state


# ------------------------------------------------------------------------------------ pruning and sharing


def _weight_modules(net: nn.Module) -> list[nn.Module]:
    """The Conv2d/Linear modules of ``net`` (also while their weight is parametrized)."""
    return [m for m in net.modules() if _index_bits(m)]


def prune_magnitude(net: nn.Module, fraction: float) -> list[nn.Module]:
    """Mask the ``fraction`` smallest-magnitude weights of every Conv2d/Linear layer (``l1_unstructured``;
    masks stay until :func:`make_pruning_permanent`); returns the pruned modules."""
    modules = _weight_modules(net)
    for m in modules:
        # the magnitudes are passed contiguous: prune views them flat, which a channels_last weight refuses
        prune.l1_unstructured(m, "weight", amount=round(fraction * m.weight.numel()),
                              importance_scores=m.weight.detach().contiguous())
    return modules


def make_pruning_permanent(modules: Sequence[nn.Module]) -> None:
    """Replace each pruned weight by its masked value (a plain parameter whose pruned entries are 0)."""
    for m in modules:
        prune.remove(m, "weight")


def kmeans_1d(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids, cluster of each value) of 1-D k-means with centroids initialised evenly over
    [min, max]; Lloyd iterations until no value changes cluster. Runs in float64 on the CPU."""
    x = values.detach().double().cpu()
    centroids = torch.linspace(x.min().item(), x.max().item(), k, dtype=torch.float64)
    assign = None
    for _ in range(KMEANS_MAX_ITERS):
        # 1-D clusters are intervals: the boundaries are the midpoints of sorted centroids
        new = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, x)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)  # empty clusters stay
    return centroids.float(), assign


class SharedWeights(nn.Module):
    """Parametrization ``weight = [0, *centroids][index + 1]``: index -1 marks a pruned weight, which stays 0.

    Autograd sums the gradients of the weights sharing a centroid (Han et al., Sec. 3.3); the sum is divided
    by the cluster's size, i.e. the paper's rule with a learning rate of lr / size per centroid, so that the
    fidelity's learning rate, tuned for single weights, moves a centroid as far as it would move one weight
    (the plain sum moves a centroid of thousands of weights thousands of times too far and wrecks the net).
    """

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor) -> None:
        super().__init__()
        self.centroids = nn.Parameter(centroids)
        self.register_buffer("index", index)
        sizes = torch.bincount(index[index >= 0], minlength=len(centroids))
        self.register_buffer("grad_scale", 1.0 / sizes.clamp(min=1).float())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        fixed = self.centroids.detach()
        centroids = fixed + (self.centroids - fixed) * self.grad_scale  # the centroids' values, scaled gradient
        return torch.cat([centroids.new_zeros(1), centroids])[self.index + 1]


def share_weights(net: nn.Module, k: int) -> list[nn.Module]:
    """Replace every Conv2d/Linear weight by k shared values of its non-zero entries (k-means); the
    parametrizations stay until :func:`fix_shared_weights`. Returns the shared modules."""
    modules = _weight_modules(net)
    for m in modules:
        w = m.weight.detach()
        kept = w != 0
        index = torch.full(w.shape, -1, dtype=torch.long, device=w.device)
        centroids = torch.zeros(k, device=w.device)
        if kept.any():
            c, assign = kmeans_1d(w[kept], k)
            centroids = c.to(w.device)
            index[kept] = assign.to(w.device)
        parametrize.register_parametrization(m, "weight", SharedWeights(centroids, index))
    return modules


def fix_shared_weights(modules: Sequence[nn.Module]) -> None:
    """Replace each shared weight by its current value (a plain parameter of at most k distinct non-zeros)."""
    for m in modules:
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


# ----------------------------------------------------------------------------------------------- baseline


def _nonzero_params(net: nn.Module, spec: NetSpec) -> int:
    """Non-zero Conv2d/Linear weights plus every other parameter of ``net`` (a network of ``spec``)."""
    weights = [m.weight for m in _weight_modules(net)]
    return spec.params - sum(w.numel() for w in weights) + sum(int(torch.count_nonzero(w)) for w in weights)


def _sparsity(net: nn.Module) -> float:
    """Fraction of the Conv2d/Linear weights that are 0."""
    weights = [m.weight for m in _weight_modules(net)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def run(ctx: Context, *, sparsity: float, prune_steps: int, finetune_epochs: int | None, k: tuple[int, ...],
        huffman: bool) -> None:
    """Prune the teacher (records ``pruned_step<i>``), then for each k share its weights (``kmeans_k<k>``),
    fine-tune the centroids, store and decode the result (``deep_compression_k<k>``, with its ``.bin``)."""
    start = time.perf_counter()
    spec = ctx.teacher_spec
    net = copy.deepcopy(ctx.teacher_net)  # never touch the evaluator's teacher
    for step in range(1, prune_steps + 1):
        target = sparsity * step / prune_steps
        modules = prune_magnitude(net, target)
        ctx.finetune(net, finetune_epochs)
        make_pruning_permanent(modules)
        record = ctx.measure(net, spec=spec, params=_nonzero_params(net, spec), step=step, target_sparsity=target,
                             sparsity=_sparsity(net))
        ctx.log(f"pruned_step{step}", record, time.perf_counter() - start)
    pruned_seconds = time.perf_counter() - start
    teacher_bytes = ctx.scorer.teacher_record()["size_bytes"]
    for clusters in k:
        t0 = time.perf_counter()
        shared = copy.deepcopy(net)
        modules = share_weights(shared, clusters)
        clustered = copy.deepcopy(net)  # the shared weights before centroid fine-tuning, as plain weights
        with torch.no_grad():  # (a parametrized module is not deep-copied: the copies would share its class)
            for plain, parametrized in zip(_weight_modules(clustered), modules):
                plain.weight.copy_(parametrized.weight)
        record = ctx.measure(clustered, spec=spec, params=_nonzero_params(clustered, spec), k=clusters,
                             size_bytes=len(encode(clustered.state_dict(), spec, huffman=huffman)[0]))
        ctx.log(f"kmeans_k{clusters}", record, time.perf_counter() - t0)
        ctx.finetune(shared, finetune_epochs)
        fix_shared_weights(modules)
        label = f"deep_compression_k{clusters}"
        blob, sizes = encode(shared.state_dict(), spec, huffman=huffman)
        path, name = ctx.model_file(f"{label}.bin")
        atomic_write_bytes(path, blob)
        decoded = ctx.precision.prepare(build(spec).to(ctx.device))
        decoded.load_state_dict(decode(path, spec))
        facts: dict[str, Any] = {
            "sparsity": _sparsity(decoded), "target_sparsity": sparsity, "k": clusters, "huffman": huffman,
            "compression_ratio_storage": teacher_bytes / len(blob), **sizes,
        }
        record = ctx.measure(decoded, spec=spec, size_bytes=len(blob), params=_nonzero_params(decoded, spec),
                             **facts)
        ctx.result(label, decoded, record, spec=spec, seconds=pruned_seconds + time.perf_counter() - t0,
                   k=clusters, bitstream=name)
