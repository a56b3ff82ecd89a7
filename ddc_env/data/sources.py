"""Reading datasets from disk into memory: local ``.npz`` files (plain or JPEG-packed) and torchvision.

Every source ends up as a :class:`SourceData`: uint8 NCHW image tensors and int64 label tensors for the
train and test files, in file order, with the class names.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from ..paths import atomic_writer, ddc_home
from ..progress import bar_disable
from .catalog import CIFAR100_COARSE_CLASSES, KNOWN_DATASETS, PACKAGED_DATASETS, TORCHVISION_DATASETS

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
from .errors import DataError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Where torchvision keeps each dataset under its root, for error messages.
_TORCHVISION_LAYOUT = {
    "cifar10": "cifar-10-batches-py/",
    "cifar100": "cifar-100-python/",
    "cifar100_coarse": "cifar-100-python/",
    "mnist": "MNIST/raw/",
    "svhn": "train_32x32.mat and test_32x32.mat",
}


@dataclass(frozen=True)
class SourceData:
    """Both files of one dataset as read from disk, in file order, before any split or subset."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    origin: str
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """Named class sets derived from the data itself (CIFAR-100 superclasses from the raw pickles)."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir`` if given, else ``$DDC_DATA_DIR``, else ``<DDC_HOME>/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("DDC_DATA_DIR")
    return Path(env).expanduser() if env else ddc_home() / "data"


def decoded_cache_dir() -> Path:
    """Where decoded JPEG-packed datasets are cached: ``<DDC_HOME>/data/decoded``."""
    return ddc_home() / "data" / "decoded"


def npz_paths(dataset: str, data_dir: Path) -> tuple[Path, Path]:
    """The local-file convention: ``<data_dir>/<dataset>_train.npz`` and ``<data_dir>/<dataset>_test.npz``."""
    return data_dir / f"{dataset}_train.npz", data_dir / f"{dataset}_test.npz"


def load_source(dataset: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False) -> SourceData:
    """Load ``dataset``'s train and test files; local npz files take precedence over torchvision; a packaged
    dataset (``mnist_sample``) comes from the package unless ``data_dir`` is given."""
    if not isinstance(dataset, str) or not _NAME_RE.match(dataset):
        raise DataError(f"dataset name {dataset!r} is invalid: use letters, digits, '_', '.', '-' (e.g. 'cifar10')")
    root = ASSETS_DIR if (data_dir is None and dataset in PACKAGED_DATASETS) else resolve_data_dir(data_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"data_dir {root} is a file, not a directory")
    train_path, test_path = npz_paths(dataset, root)
    via_torchvision = dataset in TORCHVISION_DATASETS
    if not root.exists() and not (download and via_torchvision):
        raise _not_found(dataset, root, download, f"data_dir {root} does not exist")
    if train_path.exists() or test_path.exists():
        for p in (train_path, test_path):
            if not p.is_file():
                raise DataError(f"{dataset}: found only one of the two local files; expected both {train_path} "
                                f"and {test_path}, missing {p}")
        return _from_npz(dataset, train_path, test_path)
    if via_torchvision:
        return _from_torchvision(dataset, root, download)
    local = sorted(p.name[: -len("_train.npz")] for p in root.glob("*_train.npz"))
    what = "no local files for" if dataset in KNOWN_DATASETS else "unknown dataset"
    raise DataError(f"{what} {dataset!r}: expected {train_path} and {test_path.name}; local npz datasets in "
                    f"{root}: {local or 'none'}; torchvision datasets: {', '.join(TORCHVISION_DATASETS)}")


def _not_found(dataset: str, root: Path, download: bool, cause: str) -> DataError:
    """The one error for a dataset that is not on disk: why, what was looked for, and the ways forward."""
    train, test = npz_paths(dataset, root)
    looked = f"{train.name} and {test.name}"
    ways = ["data_dir=<a folder holding them> (or set $DDC_DATA_DIR)"]
    if dataset in TORCHVISION_DATASETS:
        looked += f", or torchvision's {_TORCHVISION_LAYOUT[dataset]}"
        ways += ["download=True (needs a network)" if not download else "download it where there is a network",
                 "for a first try offline, the MNIST sample shipped in the package: dataset='mnist_sample' (e.g. "
                 "gym.make('DDC-LeNet5-MNIST', dataset='mnist_sample'))"]
    return DataError(f"{dataset}: {cause}; expected {looked} in {root}. Ways forward: {'; '.join(ways)}")

# ---------------------------------------------------------------------------------------------- npz files


def _from_npz(dataset: str, train_path: Path, test_path: Path) -> SourceData:
    x_tr, y_tr, cls_tr = _read_npz(train_path)
    x_te, y_te, cls_te = _read_npz(test_path)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"{dataset}: train images are {tuple(x_tr.shape[1:])} (C,H,W) in {train_path} but test "
                        f"images are {tuple(x_te.shape[1:])} in {test_path}; both files must match")
    if cls_tr is not None and cls_te is not None and cls_tr != cls_te:
        raise DataError(f"{dataset}: key 'classes' differs between {train_path} and {test_path}")
    known = KNOWN_DATASETS.get(dataset)
    classes = cls_tr or cls_te or (known.class_names if known else None)
    top = int(max(y_tr.max(), y_te.max()))
    if classes is None:
        classes = tuple(str(i) for i in range(top + 1))
    elif top >= len(classes):
        raise DataError(f"{dataset}: label {top} in {train_path.parent} is out of range for the "
                        f"{len(classes)} classes {list(classes)}; labels must lie in 0..{len(classes) - 1}")
    return SourceData(x_tr, y_tr, x_te, y_te, classes, origin=str(train_path.parent))


def _read_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...] | None]:
    """One npz file -> (uint8 NCHW images, int64 labels, optional class names)."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as an .npz archive ({type(e).__name__}: {e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is a single .npy array, not an .npz archive with keys 'x' and 'y'")
    with z:
        keys = set(z.files)
        if "y" not in keys or not ({"x"} <= keys or {"jpeg", "offsets"} <= keys):
            raise DataError(f"{path} has keys {sorted(keys)}; expected 'x' (uint8 NHWC or NHW images) and 'y' "
                            f"(integer labels), or the JPEG-packed layout 'jpeg', 'offsets', 'y'; "
                            f"'classes' (str array) is optional")
        y = _labels(_array(z, "y", path), path)
        if len(y) == 0:
            raise DataError(f"{path} holds no samples (key 'y' is empty)")
        x = _array(z, "x", path) if "x" in keys else _decoded_jpeg(z, path, len(y))
        classes = _class_names(_array(z, "classes", path), path) if "classes" in keys else None
    x_t = _images_to_nchw(x, path)
    if len(x_t) != len(y):
        raise DataError(f"{path}: 'x' holds {len(x_t)} images but 'y' holds {len(y)} labels; they must match")
    if classes is not None and int(y.max()) >= len(classes):
        raise DataError(f"{path}: label {int(y.max())} is out of range for the {len(classes)} names in 'classes'")
    return x_t, y, classes


def _array(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return z[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: key {key!r} cannot be read ({type(e).__name__}: {e}); store plain numeric or "
                        f"str arrays (np.savez), not object arrays") from None


def _labels(y: np.ndarray, path: Path) -> torch.Tensor:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{path}: key 'y' must be a 1-D integer array of labels; got dtype {y.dtype}, shape {y.shape}")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{path}: key 'y' holds negative label {int(y.min())}; labels must be 0..K-1")
    return torch.from_numpy(y.astype(np.int64))


def _class_names(c: np.ndarray, path: Path) -> tuple[str, ...]:
    if c.ndim != 1 or c.dtype.kind not in "US":
        raise DataError(f"{path}: key 'classes' must be a 1-D str array of class names; got dtype {c.dtype}, "
                        f"shape {c.shape}")
    names = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in c.tolist())
    if len(set(names)) != len(names):
        raise DataError(f"{path}: key 'classes' holds duplicate names {list(names)}")
    return names


def _images_to_nchw(x: np.ndarray, path: Path | str) -> torch.Tensor:
    """uint8 NHWC or NHW array -> contiguous uint8 NCHW tensor."""
    if x.dtype != np.uint8:
        raise DataError(f"{path}: key 'x' must be uint8 (raw 0-255 pixels); got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, :, :, None]
    elif x.ndim != 4:
        raise DataError(f"{path}: key 'x' has shape {x.shape}; expected uint8 NHWC (N,H,W,C) or NHW (N,H,W)")
    elif x.shape[3] not in (1, 3, 4) and x.shape[1] in (1, 3, 4):
        raise DataError(f"{path}: key 'x' has shape {x.shape}, which looks like NCHW; expected NHWC (N,H,W,C)")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


# ------------------------------------------------------------------------------------ JPEG-packed npz files


def _decoded_jpeg(z: np.lib.npyio.NpzFile, path: Path, n_labels: int) -> np.ndarray:
    """Decode a JPEG-packed npz's images, through an on-disk cache keyed by file identity and Pillow version."""
    offsets = _array(z, "offsets", path)
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) != n_labels + 1:
        raise DataError(f"{path}: key 'offsets' must be a 1-D integer array of length len(y)+1 = {n_labels + 1}; "
                        f"got dtype {offsets.dtype}, shape {offsets.shape}")
    cache = _jpeg_cache_path(path)
    cached = _read_cached(cache, n_labels)
    if cached is not None:
        return cached
    jpeg = _array(z, "jpeg", path)
    if jpeg.ndim != 1 or jpeg.dtype != np.uint8:
        raise DataError(f"{path}: key 'jpeg' must be a 1-D uint8 array of concatenated JPEG bytes; "
                        f"got dtype {jpeg.dtype}, shape {jpeg.shape}")
    if offsets[0] < 0 or np.any(np.diff(offsets) <= 0) or offsets[-1] > len(jpeg):
        raise DataError(f"{path}: key 'offsets' must increase strictly from >= 0 to at most len(jpeg) = {len(jpeg)}")
    x = _decode_all(jpeg, offsets, path)
    try:
        with atomic_writer(cache) as f:
            np.savez(f, x=x)
    except OSError as e:
        warnings.warn(f"could not cache decoded images of {path} at {cache}: {e}", stacklevel=2)
    return x


def _jpeg_cache_path(path: Path) -> Path:
    import PIL

    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|Pillow {PIL.__version__}"
    return decoded_cache_dir() / f"{path.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.npz"


def _read_cached(cache: Path, n: int) -> np.ndarray | None:
    """The cached decoded images, or None when absent or unusable (then they are decoded again)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as c:
            x = c["x"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return x if x.dtype == np.uint8 and x.ndim == 4 and len(x) == n else None


def _decode_all(jpeg: np.ndarray, offsets: np.ndarray, path: Path) -> np.ndarray:
    from PIL import Image
    from tqdm.auto import tqdm

    n = len(offsets) - 1
    out: np.ndarray | None = None
    for i in tqdm(range(n), desc=f"decoding {path.name}", unit="img", leave=False, disable=bar_disable(True)):
        a, b = int(offsets[i]), int(offsets[i + 1])
        try:
            img = np.asarray(Image.open(io.BytesIO(jpeg[a:b].tobytes())).convert("RGB"))
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{path}: image {i} (bytes {a}:{b} of 'jpeg') is not a decodable JPEG: {e}") from None
        if out is None:
            out = np.empty((n, *img.shape), np.uint8)
        elif img.shape != out.shape[1:]:
            raise DataError(f"{path}: image {i} decodes to {img.shape}, unlike image 0 {out.shape[1:]}; "
                            f"all images must share one size")
        out[i] = img
    assert out is not None  # n >= 1: files without samples are rejected before decoding
    return out


# ------------------------------------------------------------------------------------------- torchvision


def _from_torchvision(dataset: str, root: Path, download: bool) -> SourceData:
    try:
        from torchvision import datasets as tvd
    except ImportError:
        raise DataError(f"{dataset}: no local files {npz_paths(dataset, root)[0]} and torchvision is not "
                        f"installed; install torchvision or provide the npz files") from None
    train_path, test_path = npz_paths(dataset, root)
    try:
        if dataset == "cifar10":
            parts = [tvd.CIFAR10(str(root), train=t, download=download) for t in (True, False)]
            xs = [p.data for p in parts]
            ys = [p.targets for p in parts]
        elif dataset == "mnist":
            parts = [tvd.MNIST(str(root), train=t, download=download) for t in (True, False)]
            xs = [p.data.numpy() for p in parts]
            ys = [p.targets.numpy() for p in parts]
        elif dataset == "svhn":
            parts = [tvd.SVHN(str(root), split=s, download=download) for s in ("train", "test")]
            xs = [p.data.transpose(0, 2, 3, 1) for p in parts]  # torchvision keeps SVHN as NCHW
            ys = [p.labels for p in parts]
        else:  # cifar100, cifar100_coarse
            parts = [tvd.CIFAR100(str(root), train=t, download=download) for t in (True, False)]
            xs = [p.data for p in parts]
            coarse = [_cifar100_coarse_labels(root, s) for s in ("train", "test")]
            ys = coarse if dataset == "cifar100_coarse" else [p.targets for p in parts]
    except ImportError as e:
        raise DataError(f"{dataset} through torchvision needs an extra package ({e}); install it, or provide "
                        f"{train_path} and {test_path}") from None
    except (RuntimeError, OSError) as e:  # URLError is an OSError
        cause = f"downloading it failed ({e})" if download else f"not in {root} ({e})"
        raise _not_found(dataset, root, download, cause) from None
    origin = f"torchvision:{dataset}:{root}"
    x_tr, x_te = (_images_to_nchw(np.asarray(x), origin) for x in xs)
    y_tr, y_te = (torch.as_tensor(np.asarray(y), dtype=torch.int64) for y in ys)
    groups: Mapping[str, tuple[int, ...]] = MappingProxyType({})
    if dataset == "cifar100":
        groups = _superclasses_from_labels(y_tr.numpy(), np.asarray(coarse[0]), root)
    return SourceData(x_tr, y_tr, x_te, y_te, KNOWN_DATASETS[dataset].class_names, origin, groups)


def _cifar100_coarse_labels(root: Path, split: str) -> list[int]:
    """The 20 coarse labels from the raw pickle torchvision downloads (torchvision exposes only fine ones)."""
    path = root / "cifar-100-python" / split
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        return list(entry["coarse_labels"])
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError) as e:
        raise DataError(f"cannot read 'coarse_labels' from the CIFAR-100 pickle {path}: {e}") from None


def _superclasses_from_labels(fine: np.ndarray, coarse: np.ndarray, root: Path) -> Mapping[str, tuple[int, ...]]:
    """Superclass name -> its fine label indices, derived from paired fine/coarse labels."""
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    if len(np.unique(pairs[:, 0])) != len(pairs):
        raise DataError(f"CIFAR-100 pickles under {root}: a fine label maps to several coarse labels")
    return MappingProxyType({name: tuple(int(f) for f in pairs[pairs[:, 1] == c, 0])
                             for c, name in enumerate(CIFAR100_COARSE_CLASSES)})
