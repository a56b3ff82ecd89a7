"""Student evaluations on a Ray cluster: a pool of actors, each holding the task once, scoring specs in parallel.

Layout (one pool per :class:`RayScorer` created):

- **workers**: ``workers`` Ray actors with ``num_cpus`` / ``num_gpus`` each (fractions allowed: ``num_gpus=0.25``
  packs four on one GPU). Each builds a :class:`~ddc_env.scoring.live.LiveScorer` from a picklable
  :class:`WorkerRecipe` (the :class:`~ddc_env.task.TaskConfig`, fidelity and time settings): it loads the data and
  the teacher and caches the teacher's views itself, so no tensor is ever shipped to it. It receives
  ``spec.to_dict()`` and returns the record. With an "auto" teacher or the latency model the first worker starts
  alone (it trains the teacher or measures the latency table if they are not cached yet; the others then find
  them), and every worker must load the same task (teacher, data and scoring key): a node with another teacher
  file is refused.
- **the pool actor**: a named asyncio actor (no CPU of its own) in the namespace ``ddc_env`` that owns the
  workers. It queues the students of every client, gives each idle worker one student at a time, lets a
  student asked for by two clients at once run once, and retries a student whose worker died (killed, out of
  memory, node lost) on the next idle worker, up to ``retries`` times; the dead worker restarts, loads its task
  again and rejoins.
- **clients**: the :class:`RayScorer` that created the pool (its *owner*) and every unpickled copy of it. A
  client is a light handle (address, namespace, pool name, the task's light part, the teacher's record), so
  subprocess vector envs and ``ddc search`` workers share the one pool instead of loading an evaluator each; a
  copy connects to the cluster on its first evaluation. Records come back to the caller: the driver alone writes
  the results store (wrap the client in a :class:`~ddc_env.scoring.cached.CachedScorer`), one transaction per
  evaluation, and a repeated student is a cache hit whichever process asks.

``close()`` (from the env or a caching wrapper) leaves the pool running for the other clients; the owner stops it
with :meth:`RayScorer.shutdown` (or a ``with`` block), and it stops anyway when the owner's process exits (the
actors are not detached). Example::

    with RayScorer(TaskConfig(model="lenet5", dataset="mnist_sample"), "fast", workers=2) as pool:
        records = CachedScorer(pool, "results.sqlite").score_many(specs)
"""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import exceptions as ray_errors

from ..arch import NetSpec
from ..distill import Fidelity, make_fidelity
from ..latency import LatencyProtocol
from ..models.checkpoints import TeacherCheckpoint
from ..task import Task, TaskConfig, load_task
from ..validate import check_choice, check_int, check_number
from .base import Scorer
from .live import LATENCY_MODES, LiveScorer

__all__ = ["NAMESPACE", "RayScorer", "WorkerRecipe"]

NAMESPACE = "ddc_env"
_REVIVE_TRIES = 60  # calls to a restarting worker (one second apart) before it counts as dead
_connected_pid: int | None = None  # the process that connected this module to Ray (a forked child has a dead copy)


@dataclass(frozen=True)
class WorkerRecipe:
    """What a worker builds its live scorer from (picklable, no tensors): the task config, the fidelity and the
    time settings, and the torch threads students train with."""

    task: TaskConfig
    fidelity: str | Mapping[str, Any] | Fidelity
    latency: str
    latency_protocol: LatencyProtocol | None
    device: str
    threads: int

    def build(self) -> LiveScorer:
        """Load the task and make the scorer (in the worker)."""
        return LiveScorer(load_task(self.task, progress=False), self.fidelity, latency=self.latency,
                          latency_protocol=self.latency_protocol, device=self.device, threads=self.threads)


@ray.remote
class _Worker:
    """One evaluator: the task loaded once, one student at a time."""

    def __init__(self, recipe: WorkerRecipe) -> None:
        import torch._dynamo  # noqa: F401  (what the first optimizer imports: seconds at startup, not in a record)

        try:  # a task that cannot load is reported by ready(), as the original error, not as a dead actor
            self.scorer: LiveScorer | None = recipe.build()
            self.error: Exception | None = None
        except Exception as e:
            self.scorer, self.error = None, e

    def ready(self) -> dict[str, Any]:
        """What the pool and its clients need to know of this worker's task and scorer."""
        if self.error is not None:
            raise self.error
        s = self.scorer
        return {"task": s.task.to_dict(), "teacher": s.teacher_record(), "key": s.key, "time_term": s.time_term,
                "describe": s.describe(), "identity": [s.task.key(), s.key], "pid": os.getpid(),
                "node": ray.util.get_node_ip_address()}

    def evaluate(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.scorer.evaluate(NetSpec.from_dict(spec))

    def student_weights(self, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.scorer.student_weights(NetSpec.from_dict(spec))


@ray.remote(num_cpus=0)
class _Pool:
    """The workers' owner and the clients' queue (see the module docstring)."""

    def __init__(self, recipe: WorkerRecipe, workers: int, num_cpus: float, num_gpus: float, retries: int) -> None:
        self._new = lambda: _Worker.options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=-1).remote(recipe)
        self._count, self._retries = workers, retries
        # a first worker that may write a cache the others read (an "auto" teacher, the latency table) starts alone
        self._first_alone = recipe.task.teacher == "auto" or recipe.latency == "model"
        self._workers: list[Any] = []
        self._info: list[dict[str, Any]] = []
        self._free: asyncio.Queue[int | None] = asyncio.Queue()  # idle workers; None: the pool is broken
        self._busy: dict[int, str] = {}  # worker -> what it is doing
        self._restarting: set[int] = set()
        self._dead: dict[int, str] = {}  # worker -> why it is gone for good
        self._in_flight: dict[str, asyncio.Future] = {}  # spec hash -> its evaluation
        self._background: set[asyncio.Task] = set()

    async def start(self) -> dict[str, Any]:
        """Start the workers and check they loaded the same task; the first one's info."""
        first = 1 if self._first_alone else 0
        self._workers = [self._new() for _ in range(first)]
        self._info = [await self._ready(w) for w in self._workers]
        self._workers += [self._new() for _ in range(self._count - first)]
        self._info += await asyncio.gather(*(self._ready(w) for w in self._workers[first:]))
        for i, info in enumerate(self._info):
            mismatch = self._mismatch(info)
            if mismatch:
                raise RuntimeError(mismatch)
            self._free.put_nowait(i)
        return self._info[0]

    async def _ready(self, worker: Any) -> dict[str, Any]:
        try:
            return await worker.ready.remote()
        except ray_errors.RayTaskError as e:  # the task did not load: the worker's own error
            raise _cause(e) from None

    def _mismatch(self, info: dict[str, Any]) -> str:
        first = self._info[0]
        if info["identity"] == first["identity"]:
            return ""
        return (f"the Ray worker on {info['node']} loaded another task than the one on {first['node']} (teacher "
                f"{info['task']['teacher_id'][:12]} vs {first['task']['teacher_id'][:12]}, data "
                f"{info['task']['data_key'][:12]} vs {first['task']['data_key'][:12]}, scoring key {info['key']!r} vs "
                f"{first['key']!r}): every node needs the same teacher checkpoint (pass teacher=<path>), data files "
                f"and time model")

    async def score(self, spec: dict[str, Any], spec_hash: str) -> dict[str, Any]:
        """The record of ``spec``, with ``cache_hit=True`` when another request for it was already running."""
        running = self._in_flight.get(spec_hash)
        if running is not None:
            return {**await asyncio.shield(running), "cache_hit": True}
        running = self._in_flight[spec_hash] = asyncio.ensure_future(
            self._on_worker("evaluate", spec, what=f"student {spec_hash[:12]}"))
        try:
            return {**await running, "cache_hit": False}
        finally:
            self._in_flight.pop(spec_hash, None)

    async def weights(self, spec: dict[str, Any], spec_hash: str) -> dict[str, torch.Tensor]:
        """The trained weights of ``spec``'s student."""
        return await self._on_worker("student_weights", spec, what=f"weights of student {spec_hash[:12]}")

    async def status(self) -> list[dict[str, Any]]:
        """One row per worker: index, pid, node, state and what it is doing (None unless busy)."""
        return [{"index": i, "pid": info["pid"], "node": info["node"], "busy": self._busy.get(i),
                 "state": "dead" if i in self._dead else "restarting" if i in self._restarting else
                 "busy" if i in self._busy else "idle"} for i, info in enumerate(self._info)]

    async def _on_worker(self, method: str, *args: Any, what: str) -> Any:
        """``method(*args)`` on the next idle worker; again on another one when the worker dies meanwhile."""
        lost: list[str] = []
        while True:
            i = await self._free.get()
            if i is None:  # every worker is gone: pass the news on to the next waiter
                self._free.put_nowait(None)
                raise RuntimeError(f"{what}: the Ray pool has no worker left ({'; '.join(self._dead.values())})")
            self._busy[i] = what
            try:
                result = await getattr(self._workers[i], method).remote(*args)
            except ray_errors.RayActorError as e:  # killed, out of memory, node lost: it restarts; try elsewhere
                del self._busy[i]
                lost.append(f"worker {i} (pid {self._info[i]['pid']}) died: {type(e).__name__}")
                task = asyncio.ensure_future(self._revive(i))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                if len(lost) > self._retries:
                    raise RuntimeError(f"{what} was lost {len(lost)} times: {'; '.join(lost)}") from None
                continue
            except ray_errors.RayTaskError as e:  # the evaluation itself failed: the same on any worker
                error: Exception | None = _cause(e)
            else:
                error = None
            del self._busy[i]
            self._free.put_nowait(i)
            if error is not None:
                raise error
            return result

    async def _revive(self, i: int) -> None:
        """Wait for dead worker ``i`` to restart and load its task; then it takes students again."""
        self._restarting.add(i)
        try:
            reason = await self._restart(i)
        finally:
            self._restarting.discard(i)
        if reason:
            self._dead[i] = f"worker {i}: {reason}"
            if len(self._dead) == len(self._workers):
                self._free.put_nowait(None)

    async def _restart(self, i: int) -> str:
        """Wait for worker ``i``'s restart; returns why it cannot take students again ("" when it can)."""
        reason = "it did not restart"
        for _ in range(_REVIVE_TRIES):
            try:
                info = await self._workers[i].ready.remote()
            except ray_errors.ActorUnavailableError:  # still restarting
                await asyncio.sleep(1.0)
                continue
            except (ray_errors.RayActorError, ray_errors.RayTaskError) as e:
                reason = f"it cannot restart: {type(e).__name__}"
                break
            reason = self._mismatch(info)
            if not reason:
                self._info[i] = info
                self._free.put_nowait(i)
            break
        return reason


def _cause(error: ray_errors.RayTaskError) -> Exception:
    """The exception a remote call raised (a RayTaskError wraps it with a remote traceback)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, Exception) else error


def _connect(address: str | None) -> bool:
    """Connect this process to Ray: the running connection, else ``ray.init(address)`` (None: a new local
    instance, or the cluster in ``RAY_ADDRESS``). Returns whether this call started the connection; an address
    where nothing answers is a ValueError at once (Ray itself would retry for minutes)."""
    global _connected_pid
    _check_reachable(address)
    if ray.is_initialized():
        if _connected_pid not in (None, os.getpid()):
            raise RuntimeError("this process is a fork of one connected to Ray, and a fork cannot use that "
                               "connection: start subprocesses with the 'spawn' or 'forkserver' method (e.g. "
                               "AsyncVectorEnv(..., context='spawn'))")
        return False
    try:
        ray.init(address=address, namespace=NAMESPACE, **({"include_dashboard": False} if address is None else {}))
    except ConnectionError as e:
        raise ValueError(f"cannot connect to Ray at {address}: {' '.join(str(e).split())}") from None
    _connected_pid = os.getpid()
    return True


def _check_reachable(address: str | None) -> None:
    """A ValueError when nothing listens at a ``host:port`` (or ``ray://host:port``) address."""
    if address is None or ":" not in address:  # None, "auto", "local": Ray resolves them and fails fast
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise ValueError(f"no Ray cluster answers at {address} ({getattr(e, 'strerror', None) or e}): start one "
                         f"with `ray start --head` on that machine and pass its address (host:6379), or pass no "
                         f"address to start a local Ray instance") from None


class RayScorer(Scorer):
    """Scores students on a pool of Ray actors (see the module docstring); asynchronous: :meth:`submit` returns at
    once and records come back out of order as the workers finish.

    ``task``: the :class:`~ddc_env.task.TaskConfig` every worker loads (the teacher "auto" or a checkpoint path:
    on a multi-node cluster a path every node can read); ``fidelity``, ``latency``, ``latency_protocol``,
    ``device`` as for :class:`~ddc_env.scoring.live.LiveScorer`; ``threads``: the torch threads a worker trains
    with (default: its whole CPUs, at least 1). ``workers``: actors in the pool (None: as many as the free
    resources hold); ``num_cpus`` / ``num_gpus``: Ray resources per worker (fractions allowed); ``address``: the
    cluster (``"host:6379"``, ``"auto"``, ``"ray://host:10001"``; None: the cluster this process is connected
    to, else ``RAY_ADDRESS``, else a new local instance); ``retries``: how often a student whose worker died is
    sent again. A process already connected to Ray uses that connection (an ``address`` where nothing answers is
    still an error). Creating the scorer starts the pool and waits until every worker has loaded the task.
    """

    concurrent = True

    def __init__(self, task: TaskConfig, fidelity: str | Mapping[str, Any] | Fidelity = "fast", *,
                 latency: str = "model", latency_protocol: LatencyProtocol | None = None, device: str = "auto",
                 threads: int | None = None, workers: int | None = None, num_cpus: float = 1.0,
                 num_gpus: float = 0.0, address: str | None = None, retries: int = 3) -> None:
        if not isinstance(task, TaskConfig):
            raise ValueError(f"task must be a TaskConfig (each worker loads the task from it), got "
                             f"{type(task).__name__}")
        if isinstance(task.teacher, TeacherCheckpoint):
            raise ValueError("a Ray pool loads the teacher in every worker: pass teacher='auto' or a checkpoint "
                             "path, not a loaded TeacherCheckpoint")
        make_fidelity(dict(fidelity) if isinstance(fidelity, Mapping) else fidelity)
        check_choice(latency, "latency", LATENCY_MODES)
        num_cpus = check_number(num_cpus, "num_cpus", minimum=0.0, exclusive_minimum=True)
        num_gpus = check_number(num_gpus, "num_gpus", minimum=0.0)
        check_int(workers, "workers", minimum=1, optional=True)
        check_int(retries, "retries")
        threads = check_int(threads, "threads", minimum=1, optional=True) or max(1, int(num_cpus))
        if address is not None and not isinstance(address, str):
            raise ValueError(f"address must be a string such as 'host:6379' or None, got {address!r}")
        recipe = WorkerRecipe(task, fidelity, latency, latency_protocol, device, threads)

        self._lock = threading.Lock()
        self._owner, self._pid = True, os.getpid()
        self._started_ray = _connect(address)
        gcs = ray.get_runtime_context().gcs_address
        pool = f"pool-{uuid.uuid4().hex[:12]}"
        handle = None
        try:
            workers = _fitting_workers(workers, num_cpus, num_gpus, gcs)
            handle = _Pool.options(name=pool, namespace=NAMESPACE).remote(recipe, workers, num_cpus, num_gpus,
                                                                            retries)
            info = ray.get(handle.start.remote())
        except BaseException as e:
            if handle is not None:
                ray.kill(handle)
            if self._started_ray:
                ray.shutdown()
            raise _cause(e) if isinstance(e, ray_errors.RayTaskError) else e
        self._handle = handle
        self._setup({"address": gcs, "pool": pool, "task": info["task"], "teacher": info["teacher"],
                     "key": info["key"], "time_term": info["time_term"],
                     "describe": {**info["describe"], "backend": type(self).__name__,
                                  "ray": {"address": gcs, "namespace": NAMESPACE, "pool": pool, "workers": workers,
                                          "num_cpus": num_cpus, "num_gpus": num_gpus, "threads": threads}}})

    def _setup(self, state: dict[str, Any]) -> None:
        self._state = state
        self.address, self.pool = state["address"], state["pool"]
        self.task = Task.from_dict(state["task"])
        self.fidelity = state["describe"]["fidelity"]

    # -- a light client handle when pickled -------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return self._state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state)
        self._lock = threading.Lock()
        self._owner, self._pid, self._started_ray, self._handle = False, None, False, None

    def _actor(self) -> Any:
        """The pool actor's handle (a copy connects to the cluster and finds the pool by name on first use)."""
        with self._lock:
            if self._pid not in (None, os.getpid()):
                raise RuntimeError(f"a RayScorer copied into a forked process cannot reach the pool {self.pool}: "
                                   f"start subprocesses with the 'spawn' or 'forkserver' method")
            if self._handle is None:
                _connect(self.address)
                try:
                    self._handle = ray.get_actor(self.pool, namespace=NAMESPACE)
                except ValueError:
                    raise RuntimeError(f"no Ray pool {self.pool} at {self.address}: the process that started it "
                                       f"shut it down or exited") from None
                self._pid = os.getpid()
            return self._handle

    def _error(self, error: BaseException) -> BaseException:
        """What a caller sees of a failed remote call: the evaluation's own error, or one line on a lost pool."""
        if isinstance(error, ray_errors.RayTaskError):
            return _cause(error)
        if isinstance(error, (ray_errors.RayError, ConnectionError)):
            return RuntimeError(f"the Ray pool {self.pool} at {self.address} is gone ({type(error).__name__}): "
                                f"the evaluations finished so far are in the results store; start the cluster "
                                f"again (or choose another address or the local backend) and resume the search")
        return error

    # -- the Scorer protocol ----------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self._state["key"]

    @property
    def time_term(self) -> str:
        return self._state["time_term"]

    def describe(self) -> dict[str, Any]:
        return dict(self._state["describe"])

    def teacher_record(self) -> dict[str, Any]:
        return dict(self._state["teacher"])

    def submit(self, spec: NetSpec) -> Future:
        """Queue ``spec`` on the pool; returns at once."""
        out: Future = Future()
        try:
            ref = self._actor().score.remote(spec.to_dict(), spec.hash())
        except Exception as e:
            out.set_exception(self._error(e))
            return out
        ref.future().add_done_callback(lambda done: self._deliver(done, out))
        return out

    def _deliver(self, done: Future, out: Future) -> None:
        try:
            record = done.result()
        except BaseException as e:
            out.set_exception(self._error(e))
            return
        out.set_result({**record, "simulated_seconds": 0.0 if record["cache_hit"] else record["eval_seconds"]})

    def evaluate(self, spec: NetSpec) -> dict[str, Any]:
        record = self.submit(spec).result()
        return {k: v for k, v in record.items() if k not in ("cache_hit", "simulated_seconds")}

    def student_weights(self, spec: NetSpec) -> dict[str, torch.Tensor]:
        """The weights of ``spec``'s student trained on a worker exactly as its evaluation trained it."""
        return self._get(self._actor().weights.remote(spec.to_dict(), spec.hash()))

    def status(self) -> list[dict[str, Any]]:
        """One row per worker: ``index``, ``pid``, ``node``, ``state`` ("idle", "busy", "restarting" after its
        process died, "dead" when it cannot restart) and ``busy`` (what it scores, else None)."""
        return self._get(self._actor().status.remote())

    def _get(self, ref: Any) -> Any:
        try:
            return ray.get(ref)
        except ray_errors.RayError as e:
            raise self._error(e) from None

    # -- lifetime ---------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop the pool and its workers (the owner only: copies cannot); also disconnects from Ray when the pool
        started the connection (a local instance stops)."""
        if not self._owner:
            raise RuntimeError(f"only the process that started the Ray pool {self.pool} can shut it down")
        if self._handle is not None:
            ray.kill(self._handle)  # the workers are the pool actor's: they stop with it
            self._handle = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _fitting_workers(workers: int | None, num_cpus: float, num_gpus: float, address: str) -> int:
    """``workers``, checked against the cluster's free resources (None: as many as fit)."""
    free = ray.available_resources()
    cpus, gpus = free.get("CPU", 0.0), free.get("GPU", 0.0)
    fit = int(cpus / num_cpus + 1e-9)
    if num_gpus > 0:
        fit = min(fit, int(gpus / num_gpus + 1e-9))
    wanted = fit if workers is None else workers
    if not 1 <= wanted <= fit:
        per = f"{num_cpus:g} CPU" + (f" and {num_gpus:g} GPU" if num_gpus else "")
        raise ValueError(f"the Ray cluster at {address} has {cpus:g} CPUs and {gpus:g} GPUs free: {max(wanted, 1)} "
                         f"worker(s) of {per} each do not fit; ask for fewer workers or fewer CPUs/GPUs per "
                         f"worker, or add nodes (ray start --address {address})")
    return wanted
