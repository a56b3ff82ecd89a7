"""Tests for ddc_env.data on synthetic npz files in tmp_path (no network, no shared data)."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddc_env.data import (
    CIFAR10_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_CLASSES,
    DataConfig,
    DataError,
    ValSplit,
    augment,
    batch_indices,
    channel_stats,
    crop_flip,
    iterate_batches,
    load_data,
    named_sets,
    normalize,
    resolve_classes,
    resolve_data_dir,
    sample_crop_flip,
    stratified_cap,
)

# The standard CIFAR-100 fine -> coarse label table, written independently of the package's name table.
FINE_TO_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]


def save_npz(directory: Path, dataset: str, split: str, **arrays: np.ndarray) -> Path:
    path = directory / f"{dataset}_{split}.npz"
    np.savez(path, **arrays)
    return path


def make_dataset(directory: Path, dataset: str = "toy", n_classes: int = 4, per_class: int = 30,
                 shape: tuple[int, ...] = (8, 8, 3), seed: int = 0, **extra: np.ndarray) -> dict[str, np.ndarray]:
    """Write <dataset>_{train,test}.npz with interleaved labels and random pixels; return the arrays."""
    rng = np.random.default_rng(seed)
    n = n_classes * per_class
    arrays: dict[str, np.ndarray] = {
        "x_train": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "y_train": (np.arange(n) % n_classes).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n // 2, *shape), dtype=np.uint8),
        "y_test": (np.arange(n // 2) % n_classes).astype(np.int64),
    }
    directory.mkdir(parents=True, exist_ok=True)
    save_npz(directory, dataset, "train", x=arrays["x_train"], y=arrays["y_train"], **extra)
    save_npz(directory, dataset, "test", x=arrays["x_test"], y=arrays["y_test"], **extra)
    return arrays


def jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_jpeg_dataset(directory: Path, dataset: str = "toyjpeg", n: int = 12) -> dict[str, np.ndarray]:
    """Write a JPEG-packed train/test pair (arrays jpeg, offsets, y); return the directly decoded images."""
    rng = np.random.default_rng(1)
    decoded = {}
    for split in ("train", "test"):
        imgs = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        blobs = [jpeg_bytes(im) for im in imgs]
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        jpeg = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        save_npz(directory, dataset, split, jpeg=jpeg, offsets=offsets, y=(np.arange(n) % 2).astype(np.uint8))
        decoded[split] = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
    return decoded


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------------------- npz sources


def test_npz_round_trip_nhwc(tmp_path: Path) -> None:
    a = make_dataset(tmp_path)
    b = load_data(DataConfig(dataset="toy", data_dir=str(tmp_path)))
    assert b.train.x.dtype == torch.uint8 and b.train.y.dtype == torch.int64
    assert b.in_channels == 3 and b.image_size == (8, 8) and b.num_classes == 4
    assert b.class_names == ("0", "1", "2", "3") and b.class_indices == (0, 1, 2, 3)
    # train and val partition the training file and carry its pixels and labels unchanged
    idx = np.concatenate([b.train.index.numpy(), b.val.index.numpy()])
    assert sorted(idx.tolist()) == list(range(len(a["y_train"])))
    for part in (b.train, b.val):
        np.testing.assert_array_equal(nhwc(part.x), a["x_train"][part.index.numpy()])
        np.testing.assert_array_equal(part.y.numpy(), a["y_train"][part.index.numpy()])
    np.testing.assert_array_equal(nhwc(b.test.x), a["x_test"])
    np.testing.assert_array_equal(b.test.y.numpy(), a["y_test"])
    # unknown dataset: normalisation constants come from the whole training file
    px = a["x_train"].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(b.mean, px.mean(0), rtol=1e-9)
    np.testing.assert_allclose(b.std, px.std(0), rtol=1e-9)


def test_npz_round_trip_nhw_grayscale_with_classes(tmp_path: Path) -> None:
    names = np.array(["zero", "one", "two"])
    a = make_dataset(tmp_path, n_classes=3, shape=(6, 5), classes=names)
    b = load_data(dataset="toy", data_dir=tmp_path)
    assert b.train.x.shape[1:] == (1, 6, 5) and b.in_channels == 1 and b.image_size == (6, 5)
    assert b.class_names == ("zero", "one", "two")
    np.testing.assert_array_equal(b.train.x[:, 0].numpy(), a["x_train"][b.train.index.numpy()])


def test_known_dataset_names_use_catalog_constants_and_local_npz_wins(tmp_path: Path) -> None:
    make_dataset(tmp_path, dataset="mnist", n_classes=10, per_class=10, shape=(4, 4))
    make_dataset(tmp_path, dataset="cifar10", n_classes=10, per_class=10, shape=(4, 4, 3))
    m = load_data(dataset="mnist", data_dir=tmp_path)
    assert m.class_names == tuple("0123456789") and m.mean == (0.1307,) and m.std == (0.3081,)
    c = load_data(dataset="cifar10", data_dir=tmp_path)  # torchvision is never consulted
    assert c.class_names == CIFAR10_CLASSES and c.mean == (0.4914, 0.4822, 0.4465)
    assert c.origin == str(tmp_path)


def test_data_dir_falls_back_to_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DDC_DATA_DIR", raising=False)
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == tmp_path / "home" / "data"
    make_dataset(tmp_path / "home" / "data")
    assert len(load_data(dataset="toy").train) == 108
    monkeypatch.setenv("DDC_DATA_DIR", str(tmp_path / "elsewhere"))
    assert resolve_data_dir() == tmp_path / "elsewhere"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


# ----------------------------------------------------------------------------------------------- JPEG


def test_jpeg_layout_decodes_and_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    data.mkdir()
    decoded = make_jpeg_dataset(data)
    b = load_data(dataset="toyjpeg", data_dir=data, val_every=3)
    np.testing.assert_array_equal(nhwc(b.test.x), decoded["test"])
    np.testing.assert_array_equal(nhwc(b.train.x), decoded["train"][b.train.index.numpy()])
    cache_dir = tmp_path / "home" / "data" / "decoded"
    cached = sorted(p.name for p in cache_dir.iterdir())
    assert len(cached) == 2 and all(n.startswith("toyjpeg_") and n.endswith(".npz") for n in cached)
    with np.load(cache_dir / cached[1]) as z:  # a plain npz: x NHWC uint8
        np.testing.assert_array_equal(z["x"], decoded["train"])

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(Image, "open", no_decoding)
    again = load_data(dataset="toyjpeg", data_dir=data, val_every=3)
    assert torch.equal(again.train.x, b.train.x) and torch.equal(again.test.x, b.test.x)
    # a changed source file (new mtime) is decoded afresh under a new key
    os.utime(data / "toyjpeg_train.npz", ns=(1, 1))
    monkeypatch.undo()
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    load_data(dataset="toyjpeg", data_dir=data, val_every=3)
    names = [p.name for p in cache_dir.iterdir()]
    assert len(names) == 3 and not any(n.endswith(".tmp") for n in names)


def test_jpeg_layout_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    make_jpeg_dataset(tmp_path, n=4)
    with np.load(tmp_path / "toyjpeg_train.npz") as z:
        good = dict(z)
    save_npz(tmp_path, "toyjpeg", "train", **{**good, "offsets": good["offsets"][:-1]})
    with pytest.raises(DataError, match=r"toyjpeg_train\.npz: key 'offsets' must be .* length len\(y\)\+1 = 5"):
        load_data(dataset="toyjpeg", data_dir=tmp_path, val_every=2)
    junk = good["jpeg"].copy()
    junk[: good["offsets"][1]] = 7
    save_npz(tmp_path, "toyjpeg", "train", **{**good, "jpeg": junk})
    with pytest.raises(DataError, match=r"toyjpeg_train\.npz: image 0 .* not a decodable JPEG"):
        load_data(dataset="toyjpeg", data_dir=tmp_path, val_every=2)


# ---------------------------------------------------------------------------------------------- splits


@pytest.mark.parametrize("layout", ["interleaved", "sorted", "shuffled"])
@pytest.mark.parametrize("every", [10, 4])
def test_every_nth_split_is_exact_per_class(layout: str, every: int) -> None:
    counts = [37, 50, 23]
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    if layout == "interleaved":
        y = np.arange(110) % 3
    elif layout == "shuffled":
        y = np.random.default_rng(5).permutation(y)
    train, val = ValSplit("every", every).indices(y)
    expected = np.sort(np.concatenate([np.flatnonzero(y == k)[::every] for k in range(3)]))
    np.testing.assert_array_equal(val, expected)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    for k in range(3):  # class-wise positions 0, every, 2*every, ...
        pos_in_class = np.flatnonzero(np.isin(np.flatnonzero(y == k), val))
        np.testing.assert_array_equal(pos_in_class, np.arange(0, (y == k).sum(), every))


def test_default_split_gives_ten_percent_per_class(tmp_path: Path) -> None:
    make_dataset(tmp_path, n_classes=5, per_class=40)
    b = load_data(dataset="toy", data_dir=tmp_path)
    assert torch.bincount(b.val.y).tolist() == [4] * 5 and len(b.train) == 180
    assert b.describe()["val_split"] == {
        "method": "every", "every": 10,
        "text": "within each class, every 10th training sample in file order (class-wise positions 0, 10, 20, ...)"}


def test_random_split_is_seeded_and_stratified() -> None:
    y = np.repeat(np.arange(4), [100, 60, 40, 20])
    s = ValSplit("random", fraction=0.25, seed=3)
    train, val = s.indices(y)
    train2, val2 = ValSplit("random", fraction=0.25, seed=3).indices(y)
    np.testing.assert_array_equal(val, val2)
    np.testing.assert_array_equal(train, train2)
    assert np.bincount(y[val]).tolist() == [25, 15, 10, 5]
    assert not np.array_equal(val, ValSplit("random", fraction=0.25, seed=4).indices(y)[1])
    assert not np.array_equal(val[:25], np.arange(25))  # not simply the first samples
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    assert s.describe()["seed"] == 3 and s.describe()["fraction"] == 0.25


def test_caps_are_stratified_deterministic_and_nested() -> None:
    y = np.repeat(np.arange(3), [60, 30, 10])
    small, big = stratified_cap(y, 20), stratified_cap(y, 50)
    assert np.bincount(y[small]).tolist() == [12, 6, 2]
    assert np.bincount(y[big]).tolist() == [30, 15, 5]
    assert set(small) <= set(big)
    np.testing.assert_array_equal(small[y[small] == 2], [60 + 30, 60 + 31])  # first in file order


def test_caps_in_load_data(tmp_path: Path) -> None:
    make_dataset(tmp_path, n_classes=4, per_class=50)
    full = load_data(dataset="toy", data_dir=tmp_path)
    b = load_data(dataset="toy", data_dir=tmp_path, max_train=40, max_val=8)
    assert torch.bincount(b.train.y).tolist() == [10] * 4 and torch.bincount(b.val.y).tolist() == [2] * 4
    assert set(b.train.index.tolist()) <= set(full.train.index.tolist())
    assert set(b.val.index.tolist()) <= set(full.val.index.tolist())
    assert len(b.test) == len(full.test)  # the test split is never capped


# --------------------------------------------------------------------------------------------- subsets


def test_subsets_by_names_indices_and_named_sets(tmp_path: Path) -> None:
    a = make_dataset(tmp_path, dataset="cifar10", n_classes=10, per_class=20, shape=(4, 4, 3))
    full = load_data(dataset="cifar10", data_dir=tmp_path)
    for spec in [("cat", "dog"), (3, 5), ("cat", 5), "cat,dog", "3,5", " 3, dog"]:  # indices in a string too
        b = load_data(dataset="cifar10", data_dir=tmp_path, classes=spec)
        assert b.class_indices == (3, 5) and b.class_names == ("cat", "dog") and b.num_classes == 2
        assert b.fingerprint() == load_data(dataset="cifar10", data_dir=tmp_path, classes=(3, 5)).fingerprint()
    rev = load_data(dataset="cifar10", data_dir=tmp_path, classes=(5, 3))
    assert rev.class_names == ("dog", "cat")
    for part, orig_y in [(rev.train, a["y_train"]), (rev.val, a["y_train"]), (rev.test, a["y_test"])]:
        orig = orig_y[part.index.numpy()]
        assert set(orig.tolist()) == {3, 5}
        np.testing.assert_array_equal(part.y.numpy(), np.where(orig == 5, 0, 1))  # remapped in the order given
    # a subset's val images are exactly the full split's val images of those classes
    full_val = full.val.index[(full.val.y == 3) | (full.val.y == 5)]
    assert rev.val.index.tolist() == full_val.tolist()
    v = load_data(dataset="cifar10", data_dir=tmp_path, classes="vehicles")
    assert v.class_indices == (0, 1, 8, 9) and v.class_names == ("airplane", "automobile", "ship", "truck")
    an = load_data(dataset="cifar10", data_dir=tmp_path, classes="animals")
    assert an.class_indices == (2, 3, 4, 5, 6, 7)
    assert torch.bincount(an.train.y).tolist() == [18] * 6
    # a teacher's logits can be sliced to the subset
    logits = torch.arange(10.0).repeat(2, 1)
    assert logits[:, list(v.class_indices)].tolist()[0] == [0.0, 1.0, 8.0, 9.0]


def test_cifar100_superclasses_resolve_to_five_fine_classes() -> None:
    assert len(CIFAR100_FINE_CLASSES) == 100 and len(set(CIFAR100_FINE_CLASSES)) == 100
    assert CIFAR100_FINE_CLASSES[:3] == ("apple", "aquarium_fish", "baby")
    assert len(CIFAR100_COARSE_CLASSES) == 20
    sets = named_sets(CIFAR100_FINE_CLASSES)
    assert "vehicles" not in sets  # CIFAR-10 sets do not apply to CIFAR-100 names
    seen: list[int] = []
    for c, coarse in enumerate(CIFAR100_COARSE_CLASSES):
        fine = resolve_classes(coarse, CIFAR100_FINE_CLASSES)
        assert len(fine) == 5 and all(FINE_TO_COARSE[f] == c for f in fine)
        seen += fine
    assert sorted(seen) == list(range(100))
    assert resolve_classes("people", CIFAR100_FINE_CLASSES) == (2, 11, 35, 46, 98)
    assert resolve_classes("vehicles_1", CIFAR100_FINE_CLASSES) == tuple(
        CIFAR100_FINE_CLASSES.index(n) for n in ("bicycle", "bus", "motorcycle", "pickup_truck", "train"))


def test_cifar100_superclass_subset_of_local_npz(tmp_path: Path) -> None:
    make_dataset(tmp_path, dataset="cifar100", n_classes=100, per_class=10, shape=(2, 2, 3))
    b = load_data(dataset="cifar100", data_dir=tmp_path, classes="fish")
    assert b.class_names == ("aquarium_fish", "flatfish", "ray", "shark", "trout")
    assert b.class_indices == (1, 32, 67, 73, 91)
    assert torch.bincount(b.val.y).tolist() == [1] * 5 and len(b.train) == 45


def write_fake_cifar100(root: Path, fine_to_coarse: list[int]) -> dict[str, np.ndarray]:
    """torchvision's raw CIFAR-100 layout (pickles train/test/meta) with tiny contents."""
    rng = np.random.default_rng(3)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, per_class in (("train", 3), ("test", 1)):
        fine = np.tile(np.arange(100), per_class)
        data = rng.integers(0, 256, (len(fine), 3 * 32 * 32), dtype=np.uint8)
        entry = {"data": data, "fine_labels": fine.tolist(), "coarse_labels": [fine_to_coarse[f] for f in fine]}
        (folder / split).write_bytes(pickle.dumps(entry))
        out[f"x_{split}"] = data.reshape(-1, 3, 32, 32)
        out[f"fine_{split}"] = fine
    meta = {"fine_label_names": list(CIFAR100_FINE_CLASSES), "coarse_label_names": list(CIFAR100_COARSE_CLASSES)}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return out


def test_cifar100_through_torchvision_reads_coarse_labels_from_pickles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cifar = pytest.importorskip("torchvision.datasets.cifar")
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)  # fake files have other md5s
    mapping = [f % 20 for f in range(100)]  # deliberately not the standard table: groups must come from the data
    raw = write_fake_cifar100(tmp_path, mapping)
    fine = load_data(dataset="cifar100", data_dir=tmp_path)
    assert fine.origin.startswith("torchvision:cifar100") and fine.num_classes == 100
    assert torch.equal(fine.test.x, torch.from_numpy(raw["x_test"]))
    assert fine.test.y.tolist() == raw["fine_test"].tolist()
    fish = load_data(dataset="cifar100", data_dir=tmp_path, classes="fish")  # coarse index 1
    assert fish.class_indices == (1, 21, 41, 61, 81)
    coarse = load_data(dataset="cifar100_coarse", data_dir=tmp_path)
    assert coarse.class_names == CIFAR100_COARSE_CLASSES and coarse.mean == (0.5071, 0.4865, 0.4409)
    assert coarse.test.y.tolist() == [mapping[f] for f in raw["fine_test"]]
    assert torch.bincount(coarse.val.y).tolist() == [2] * 20  # 15 per coarse class: positions 0 and 10


def test_fingerprint_is_stable_and_sensitive(tmp_path: Path) -> None:
    make_dataset(tmp_path, n_classes=4, per_class=40)
    fp = load_data(dataset="toy", data_dir=tmp_path).fingerprint()
    assert fp == load_data(dataset="toy", data_dir=tmp_path, seed=9).fingerprint()  # seed unused by "every"
    others = {load_data(dataset="toy", data_dir=tmp_path, **kw).fingerprint()
              for kw in [{"classes": (0, 1)}, {"max_train": 50}, {"max_val": 8}, {"val_every": 5},
                         {"val_split": "random"}, {"val_split": "random", "seed": 1}]}
    assert len(others) == 6 and fp not in others and len(fp) == 64


# --------------------------------------------------------------------------------- augment and batches


def test_normalize_matches_formula() -> None:
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = normalize(x, mean, std)
    ref = (x.double() / 255 - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        std, dtype=torch.float64).view(1, 3, 1, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6)
    bf = normalize(x, mean, std, dtype=torch.bfloat16, channels_last=True)
    assert bf.dtype == torch.bfloat16 and bf.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(DataError, match="one per channel"):
        normalize(x, (0.1,) * 2, (0.1,) * 2)
    with pytest.raises(DataError, match="uint8 NCHW"):
        normalize(x.float(), mean, std)


def test_augment_shape_dtype_and_determinism() -> None:
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a1 = augment(x, torch.Generator().manual_seed(7))
    a2 = augment(x, torch.Generator().manual_seed(7))
    a3 = augment(x, torch.Generator().manual_seed(8))
    assert a1.shape == x.shape and a1.dtype == torch.uint8
    assert torch.equal(a1, a2) and not torch.equal(a1, a3) and not torch.equal(a1, x)


@pytest.mark.parametrize("pad_mode,np_mode", [("reflect", "reflect"), ("replicate", "edge"),
                                              ("constant", "constant")])
def test_augment_equals_manual_pad_crop_flip(pad_mode: str, np_mode: str) -> None:
    pad = 3
    x = torch.randint(0, 256, (32, 2, 7, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = augment(x, torch.Generator().manual_seed(5), pad=pad, pad_mode=pad_mode)
    dy, dx, flipped = sample_crop_flip(len(x), torch.Generator().manual_seed(5), pad=pad)
    assert (dy != 0).any() and (dx != 0).any() and flipped.any() and not flipped.all()
    for k in range(len(x)):
        padded = np.pad(x[k].numpy(), ((0, 0), (pad, pad), (pad, pad)), mode=np_mode)
        top, left = pad + int(dy[k]), pad + int(dx[k])
        crop = padded[:, top:top + 7, left:left + 9]
        if flipped[k]:
            crop = crop[:, :, ::-1]
        np.testing.assert_array_equal(out[k].numpy(), crop, err_msg=f"sample {k}")
    shifted = int(torch.nonzero((dy != 0) & ~flipped)[0])  # content really moves
    assert not torch.equal(out[shifted], x[shifted])


def test_flip_flag() -> None:
    x = torch.randint(0, 256, (64, 1, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    no_flip = augment(x, torch.Generator().manual_seed(0), pad=0, flip=False)
    assert torch.equal(no_flip, x)
    flipped = augment(x, torch.Generator().manual_seed(0), pad=0, flip=True)
    is_flip = (flipped == x.flip(-1)).flatten(1).all(1)
    is_same = (flipped == x).flatten(1).all(1)
    assert bool((is_flip | is_same).all()) and 10 < int(is_flip.sum()) < 54
    dy, dx, f = sample_crop_flip(8, torch.Generator().manual_seed(0), pad=2, flip=False)
    assert not f.any() and int(dy.abs().max()) <= 2
    assert torch.equal(crop_flip(x[:8], dy, dx, f), augment(x[:8], torch.Generator().manual_seed(0), 2, False))


def test_augment_rejects_bad_arguments() -> None:
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(DataError, match="pad_mode 'wrap' is unknown; allowed: reflect, replicate, constant"):
        augment(x, torch.Generator(), pad_mode="wrap")
    with pytest.raises(DataError, match="reflect padding needs pad < image size"):
        augment(x, torch.Generator(), pad=4)


def test_iterate_batches_covers_every_sample_once() -> None:
    x = torch.arange(10 * 3 * 2 * 2, dtype=torch.float32).view(10, 3, 2, 2).to(torch.uint8)
    y = torch.arange(10)
    batches = list(iterate_batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b[2]) for b in batches] == [4, 4, 2]
    idx = torch.cat([b[2] for b in batches])
    assert sorted(idx.tolist()) == list(range(10)) and idx.tolist() != list(range(10))
    for xb, yb, ib in batches:
        assert torch.equal(xb, x[ib]) and torch.equal(yb, y[ib])
    again = torch.cat([b[2] for b in iterate_batches(x, y, 4, shuffle=True,
                                                     generator=torch.Generator().manual_seed(0))])
    assert torch.equal(idx, again)
    assert [b.tolist() for b in batch_indices(10, 4, shuffle=False, drop_last=True)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(DataError, match="needs a torch.Generator"):
        next(iterate_batches(x, y, 4, shuffle=True))


def test_channel_stats() -> None:
    x = torch.zeros(2, 2, 2, 2, dtype=torch.uint8)
    x[:, 1] = 255
    x[0, 0] = 255
    mean, std = channel_stats(x, chunk=1)
    assert mean == pytest.approx((0.5, 1.0)) and std == pytest.approx((0.5, 0.0))


# ---------------------------------------------------------------------------------------------- errors


def test_unknown_dataset_and_bad_paths(tmp_path: Path) -> None:
    make_dataset(tmp_path, dataset="mine")
    with pytest.raises(DataError, match=r"unknown dataset 'nope': expected .*nope_train\.npz.*\['mine'\].*cifar10"):
        load_data(dataset="nope", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"no local files for 'cifar10_jpeg': expected .*cifar10_jpeg_train\.npz"):
        load_data(dataset="cifar10_jpeg", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"data_dir .*missing does not exist; expected cifar10_train\.npz .*"
                                        r"cifar-10-batches-py.*Ways forward: data_dir=.*download=True.*mnist_sample"):
        load_data(dataset="cifar10", data_dir=tmp_path / "missing")
    with pytest.raises(DataError, match=r"data_dir .*missing does not exist; expected mine_train\.npz and "
                                        r"mine_test\.npz in .*missing\. Ways forward: data_dir=<a folder holding "
                                        r"them> \(or set \$DDC_DATA_DIR\)$"):
        load_data(dataset="mine", data_dir=tmp_path / "missing")
    with pytest.raises(DataError, match=r"data_dir .*mine_train\.npz is a file"):
        load_data(dataset="mine", data_dir=tmp_path / "mine_train.npz")
    with pytest.raises(DataError, match="dataset name '../x' is invalid"):
        load_data(dataset="../x", data_dir=tmp_path)
    (tmp_path / "mine_test.npz").unlink()
    with pytest.raises(DataError, match=r"missing .*mine_test\.npz"):
        load_data(dataset="mine", data_dir=tmp_path)


def test_torchvision_dataset_absent_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar10: not in .* expected cifar10_train\.npz .*cifar-10-batches-py.*"
                                        r"download=True"):
        load_data(dataset="cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.zeros((4, 2, 2, 3), np.uint8)}, r"has keys \['x'\]; expected 'x' .* and 'y'"),
    ({"x": np.zeros((4, 2, 2, 3), np.float32), "y": np.zeros(4, np.int64)}, r"key 'x' must be uint8 .*float32"),
    ({"x": np.zeros((4, 4), np.uint8), "y": np.zeros(4, np.int64)}, r"key 'x' has shape \(4, 4\); expected uint8 NHWC"),
    ({"x": np.zeros((4, 3, 8, 8), np.uint8), "y": np.zeros(4, np.int64)}, r"looks like NCHW"),
    ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.zeros((4, 1), np.int64)}, r"key 'y' must be a 1-D integer"),
    ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.zeros(4, np.float32)}, r"key 'y' must be a 1-D integer"),
    ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.array([0, 1, -1, 0])}, r"negative label -1"),
    ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.zeros(3, np.int64)}, r"'x' holds 4 images but 'y' holds 3"),
    ({"x": np.zeros((0, 2, 2), np.uint8), "y": np.zeros(0, np.int64)}, r"holds no samples"),
    ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.arange(4), "classes": np.array(["a", "b"])},
     r"label 3 is out of range for the 2 names in 'classes'"),
    ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.zeros(4, np.int64), "classes": np.array([1, 2])},
     r"key 'classes' must be a 1-D str array"),
    ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.zeros(4, np.int64), "classes": np.array([{}], dtype=object)},
     r"key 'classes' cannot be read"),
])
def test_malformed_npz_raises_data_error(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    make_dataset(tmp_path, dataset="bad", n_classes=2, per_class=4, shape=(2, 2))
    save_npz(tmp_path, "bad", "train", **arrays)
    with pytest.raises(DataError, match=r"bad_train\.npz.*" + message):
        load_data(dataset="bad", data_dir=tmp_path)


def test_unreadable_and_inconsistent_files(tmp_path: Path) -> None:
    make_dataset(tmp_path, dataset="bad", n_classes=2, per_class=10, shape=(2, 2))
    (tmp_path / "bad_test.npz").write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match=r"cannot read .*bad_test\.npz as an \.npz archive"):
        load_data(dataset="bad", data_dir=tmp_path)
    save_npz(tmp_path, "bad", "test", x=np.zeros((4, 3, 3), np.uint8), y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"train images are \(1, 2, 2\).*test images are \(1, 3, 3\)"):
        load_data(dataset="bad", data_dir=tmp_path)
    make_dataset(tmp_path, dataset="mnist", n_classes=11, per_class=2, shape=(2, 2))
    with pytest.raises(DataError, match=r"label 10 .* out of range for the 10 classes"):
        load_data(dataset="mnist", data_dir=tmp_path)


def test_bad_config_values(tmp_path: Path) -> None:
    make_dataset(tmp_path, dataset="cifar10", n_classes=10, per_class=10, shape=(2, 2, 3))
    with pytest.raises(DataError, match=r"unknown class 'zebra'; allowed class names: airplane, .*truck; "
                                        r"indices 0\.\.9; named sets: vehicles, animals"):
        load_data(dataset="cifar10", data_dir=tmp_path, classes=("cat", "zebra"))
    with pytest.raises(DataError, match=r"unknown class 'reptiles'"):
        load_data(dataset="cifar10", data_dir=tmp_path, classes="reptiles")
    with pytest.raises(DataError, match=r"class index 10 is out of range; allowed: 0\.\.9"):
        load_data(dataset="cifar10", data_dir=tmp_path, classes=(1, 10))
    with pytest.raises(DataError, match="name a class twice"):
        load_data(dataset="cifar10", data_dir=tmp_path, classes=("cat", 3))
    with pytest.raises(DataError, match="classes is empty"):
        load_data(dataset="cifar10", data_dir=tmp_path, classes=())
    with pytest.raises(DataError, match=r"class index 10 is out of range"):
        load_data(dataset="cifar10", data_dir=tmp_path, classes="3,10")
    for bad in (3, 3.5, ("cat", 1.0), ("cat", True)):  # refused when the config is made, before any data is read
        with pytest.raises(DataError, match="classes must be None, a string or a list of class names or indices"):
            DataConfig(classes=bad)
    with pytest.raises(ValueError, match="download must be true or false"):
        DataConfig(download="yes")
    with pytest.raises(DataError, match="val_fraction must lie strictly between 0 and 1"):
        DataConfig(val_split="random", val_fraction="0.1")
    with pytest.raises(DataError, match="val_split 'kfold' is unknown; allowed: every, random"):
        DataConfig(val_split="kfold")
    with pytest.raises(DataError, match="val_every must be an integer >= 2"):
        DataConfig(val_every=1)
    with pytest.raises(DataError, match="val_fraction must lie strictly between 0 and 1"):
        DataConfig(val_split="random", val_fraction=1.5)
    with pytest.raises(DataError, match="max_train must be None or a positive integer"):
        DataConfig(max_train=0)
    assert DataConfig(classes=["cat", "dog"]).classes == ("cat", "dog")  # lists (YAML) become tuples
    assert issubclass(DataError, ValueError)
