"""The flagship id as written, ``gym.make("DDC-ResNet18-CIFAR10")``, without a network: a small archive in the real
``cifar-10-python.tar.gz`` format is served from a local HTTP server to torchvision's own downloader (only the URL and
checksums torchvision expects are pointed at it); offline, one error names the ways forward."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import pickle
import socket
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torchvision

import ddc_env.task
from ddc_env.data import CIFAR10_CLASSES, DataConfig, DataError
from ddc_env.models import TeacherRecipe, train_teacher
from ddc_env.models import teacher as teacher_module
from ddc_env.task import TaskError

ARCHIVE = "cifar-10-python.tar.gz"


def _batch(rng: np.random.Generator, n: int, name: str) -> bytes:
    """One CIFAR-10 batch file as the original pickles it: uint8 rows of 3x32x32 pixels, labels, file names."""
    return pickle.dumps({"batch_label": name, "labels": (np.arange(n) % 10).tolist(),
                         "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                         "filenames": [f"{name}_{i}.png" for i in range(n)]})


def _write_archive(directory: Path) -> dict[str, str]:
    """A small ``cifar-10-python.tar.gz`` (5 training batches of 20 images, a test batch of 50, the meta file) in
    ``directory``; the md5 of the archive and of each member, as torchvision checks them."""
    rng = np.random.default_rng(0)
    members = {f"data_batch_{i}": _batch(rng, 20, f"training batch {i} of 5") for i in range(1, 6)}
    members["test_batch"] = _batch(rng, 50, "testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps({"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": 20,
                                            "num_vis": 3072})
    with tarfile.open(directory / ARCHIVE, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in members.items()}
    md5[ARCHIVE] = hashlib.md5((directory / ARCHIVE).read_bytes()).hexdigest()
    return md5


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    requests: list[str]

    def handle_error(self, request, client_address) -> None:  # torchvision closes its probe request early
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        self.server.requests.append(self.path)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """(URL of the archive on a local HTTP server, md5s, the paths requested so far)."""
    served = tmp_path_factory.mktemp("mirror")
    md5 = _write_archive(served)
    server = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{ARCHIVE}", md5, server.requests
    finally:
        server.shutdown()
        server.server_close()


def _point_torchvision_at(monkeypatch: pytest.MonkeyPatch, url: str, md5: dict[str, str]) -> None:
    """CIFAR-10's URL and checksums as torchvision declares them, for this archive; its code runs unchanged."""
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "url", url)
    monkeypatch.setattr(cifar, "tgz_md5", md5[ARCHIVE])
    monkeypatch.setattr(cifar, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(cifar, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5["batches.meta"]})


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh DDC_HOME (its data/ is where the flagship downloads to), no DDC_DATA_DIR, no proxy."""
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    for name in ("DDC_DATA_DIR", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def test_the_flagship_downloads_cifar10_then_names_the_teacher_step(mirror, home, monkeypatch, capfd):
    url, md5, requests = mirror
    _point_torchvision_at(monkeypatch, url, md5)
    # the real CIFAR-10 takes hours to train a ResNet-18 on on a CPU; this small archive would not
    monkeypatch.setattr(ddc_env.task, "AUTO_TRAIN_LIMIT_SECONDS", 0.0)
    with pytest.raises(TaskError) as caught:
        gym.make("DDC-ResNet18-CIFAR10")
    message = str(caught.value)
    for way in ("`ddc teacher train --model resnet18 --dataset cifar10 --epochs 10`", "teacher=<checkpoint path>",
                "train_teacher=True", "would take at least"):
        assert way in message
    assert (home / "data" / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert requests.count(f"/{ARCHIVE}") >= 1
    assert "B/s" in capfd.readouterr().err  # torchvision's progress bar

    # the data is there for good: a teacher trained on it (a small one, for the test's sake) and the flagship id
    teacher = train_teacher("lenet5", DataConfig("cifar10"), TeacherRecipe(epochs=1), device="cpu", progress=False)
    downloads = len(requests)
    env = gym.make("DDC-ResNet18-CIFAR10", teacher=str(teacher.path), fidelity="smoke", latency="flops",
                   action_mode="one_shot")
    try:
        env.reset(seed=0)
        masks = env.unwrapped.action_masks().reshape(len(env.unwrapped.decisions), -1)
        _, _, terminated, _, info = env.step(np.array([np.flatnonzero(m)[-1] for m in masks]))
        assert terminated and info["status"] == "ok" and info["teacher_val_acc"] >= 0
    finally:
        env.close()
    assert len(requests) == downloads  # not downloaded again


def test_the_teacher_warnings_point_at_the_users_line(synth_dir, home, monkeypatch):
    monkeypatch.setattr(teacher_module, "LONG_RUN_SECONDS", 0.0)  # the trainer's own long-run warning, too
    with pytest.warns(UserWarning) as warned:
        env = gym.make("DDC-LeNet5-MNIST-v0", dataset="synth", data_dir=str(synth_dir), max_train=160,
                       teacher_recipe={"epochs": 1, "batch_size": 32}, fidelity="smoke", latency="flops", device="cpu")
    env.close()
    assert any("training one now" in str(w.message) for w in warned)
    assert any("will take about" in str(w.message) for w in warned)
    assert {w.filename for w in warned} == {__file__}, [(str(w.message)[:60], w.filename) for w in warned]


def test_offline_the_flagship_fails_with_one_error_naming_the_ways_forward(home, monkeypatch):
    with contextlib.closing(socket.socket()) as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"http://127.0.0.1:{port}/{ARCHIVE}")
    with pytest.raises(DataError) as caught:
        gym.make("DDC-ResNet18-CIFAR10")
    message = str(caught.value)
    assert message.startswith("cifar10: downloading it failed (") and "\n" not in message
    for way in (str(home / "data"), "data_dir=", "$DDC_DATA_DIR", "cifar-10-batches-py", "dataset='mnist_sample'",
                "gym.make('DDC-LeNet5-MNIST', dataset='mnist_sample')"):
        assert way in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
