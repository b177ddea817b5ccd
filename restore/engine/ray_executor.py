"""Run items on a Ray cluster: ``restore run ... --executor ray [--address auto|HOST:PORT] [--workers N]``.

Why Ray actors (with our own bounded submission) rather than Ray Data: a batch and the watch daemon feed
the same executor one item at a time as items become ready (the daemon has no dataset, only files that
settle), the driver must record each result in its journal the moment it arrives, and an item lost with
a node must be resubmitted individually.  Actors fit that: each :class:`_Worker` actor builds the
pipeline (loads the models) once and then runs many items, one at a time, in its own process; the driver
keeps at most :attr:`RayExecutor.capacity` items in flight (two per actor: one running, one queued, so a
worker never idles between items and memory stays flat however large the folder).

* **Placement.** One actor per CPU of the cluster (``--workers`` to choose), ``num_cpus=1`` each and
  ``--gpus-per-worker`` GPUs; Ray spreads them over the nodes.
* **Outputs.** Workers write outputs atomically into the output folder, which must be the same path on
  every node (a shared filesystem: NFS, SMB, a cluster filesystem).  At start every actor writes and
  removes a probe file there; an actor that cannot is a one-line error naming its node.
* **Journal.** Only the driver writes it (:mod:`restore.engine.loop`).
* **Lost workers.** A dead actor or node (``kill -9`` of its raylet, a crash) fails its item's call with an
  actor error; the executor starts a replacement actor where the cluster has room and resubmits the item
  (its temporary files removed first), up to :data:`MAX_LOSSES` times, so every item lands exactly once.
* **Stall limit.** With ``timeout_s`` each actor runs its items in an
  :class:`~restore.engine.executors.IsolatedExecutor` child process on its node: the same stall limit and
  crash isolation as a local run.

Ray is an optional extra: ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ..errors import RestoreError
from ..journal import remove_temp_files
from .executors import Executor, local_executor
from .plan import Item
from .results import FileResult

__all__ = ["RayExecutor", "MAX_LOSSES", "INSTALL_HINT"]

#: How often one item may lose its worker (a dead actor or node) before it fails.
MAX_LOSSES = 3
INSTALL_HINT = '--executor ray needs Ray: pip install -e ".[ray]"  (or pip install "ray>=2.9")'


class _Worker:
    """A Ray actor: one loaded pipeline, items one at a time (in a child process when a stall limit is set)."""

    def __init__(self, factory, timeout_s, device):
        self.pipe = factory()
        self.ex = local_executor(self.pipe, timeout_s, device)
        self.ex.start()

    def node(self) -> str:
        import socket

        return socket.gethostname()

    def check_output(self, out_dir: str) -> str | None:
        """None if this node can write into ``out_dir``, else the problem."""
        d = Path(out_dir)
        probe = d / f".restore-probe-{uuid.uuid4().hex}"
        try:
            if not d.is_dir():
                return "no such folder"
            probe.write_bytes(b"ok")
            probe.unlink()
            return None
        except OSError as e:
            return e.strerror or str(e)

    def process(self, job: dict) -> FileResult:
        item = job["item"]
        return self.ex.run(item, out_dir=Path(job["out_dir"]), overwrite=job["overwrite"], probe=job["probe"], probe_only=job["probe_only"])

    def close(self) -> None:
        self.ex.close()


class RayExecutor(Executor):
    """Items on Ray actors; see the module docstring.

    Args:
        pipeline: The processor; its picklable ``factory()`` goes to every actor.
        timeout_s: Stall limit per item on the actor's node (None: no child process, no limit).
        device: Torch device for model steps on the workers.
        address: ``"auto"`` (the cluster this machine belongs to, ``ray start``), ``HOST:PORT``, or None
            (start a Ray instance on this machine for this run).
        workers: Actors to start (default: the cluster's CPU count, or its GPU count / ``gpus_per_worker``).
        gpus_per_worker: GPUs per actor (fractions allowed).
        out_dir: The output folder every worker must reach.

    Raises:
        RestoreError: (from :meth:`start`) Ray is not installed (with the install command), the cluster
            cannot be reached, or a worker cannot write into the output folder.
    """

    def __init__(self, pipeline, timeout_s=None, device=None, *, address=None, workers=None, gpus_per_worker=0.0, out_dir=None):
        super().__init__()
        self.pipeline = pipeline
        self.timeout_s = timeout_s or None
        self.device = device
        self.address = address
        self.workers = workers
        self.gpus_per_worker = float(gpus_per_worker or 0.0)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._ray = None
        self._started_ray = False
        self._actors: list = []
        self._busy: dict = {}  # actor -> calls in flight
        self._refs: dict = {}  # ObjectRef -> (item, job, actor)
        self._losses: dict[int, int] = {}
        self.capacity = 0

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._actors:
            return
        try:
            import ray
        except ImportError:
            raise RestoreError(INSTALL_HINT) from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
                else:
                    ray.init(logging_level="ERROR", log_to_driver=False, include_dashboard=False)
            except Exception as e:  # ConnectionError, RuntimeError ...
                where = self.address or "a local Ray instance"
                raise RestoreError(f"cannot reach the Ray cluster at {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
            self._started_ray = True
        res = ray.cluster_resources()
        n = self.workers
        if n is None:
            n = int(res.get("GPU", 0) / self.gpus_per_worker) if self.gpus_per_worker else int(res.get("CPU", 1))
        n = max(1, int(n))
        self._remote = ray.remote(_Worker)
        factory = self.pipeline.factory()
        self._actors = [self._new_actor(factory) for _ in range(n)]
        self._factory = factory
        try:  # every worker loads the pipeline (a bad model fails here, once) and reaches the output folder
            if self.out_dir is not None:
                checks = ray.get([a.check_output.remote(str(Path(os.path.abspath(self.out_dir)))) for a in self._actors])
                nodes = ray.get([a.node.remote() for a in self._actors])
                bad = [(nd, why) for nd, why in zip(nodes, checks) if why]
                if bad:
                    raise RestoreError(
                        f"{self.out_dir}: not writable from the Ray worker on {bad[0][0]} ({bad[0][1]}); the output folder "
                        "must be a shared folder at the same path on every node")
            else:
                ray.get([a.node.remote() for a in self._actors])
        except RestoreError:
            self.close()
            raise
        except Exception as e:  # the actor's constructor raised: the pipeline cannot load on the workers
            self.close()
            cause = getattr(e, "cause", None) or e
            raise RestoreError(f"the Ray workers cannot load the pipeline: {str(cause).splitlines()[-1] if str(cause) else type(cause).__name__}") from None
        self._busy = {a: 0 for a in self._actors}
        self.capacity = 2 * len(self._actors)

    def _new_actor(self, factory):
        return self._remote.options(num_cpus=1, num_gpus=self.gpus_per_worker, max_restarts=0, max_task_retries=0).remote(
            factory, self.timeout_s, self.device)

    def close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self._actors, self._busy, self._refs = [], {}, {}
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._ray = None

    # -- work ----------------------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def submit(self, item: Item, *, out_dir: Path, overwrite: bool = False, probe: bool = False, probe_only: bool = False,
               prefetch=None) -> None:
        self.start()
        if self.in_flight >= self.capacity:
            raise RestoreError(f"RayExecutor: {self.capacity} items already in flight")
        job = {"item": item, "out_dir": str(Path(os.path.abspath(out_dir))), "overwrite": overwrite, "probe": probe or probe_only,
               "probe_only": probe_only}
        self._dispatch(item, job)

    def _dispatch(self, item: Item, job: dict) -> None:
        actor = min(self._actors, key=lambda a: self._busy[a])  # the least busy worker
        self._busy[actor] += 1
        self._refs[actor.process.remote(job)] = (item, job, actor)

    def wait(self, timeout=None, tile_progress=None):
        if not self._refs:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            item, job, actor = self._refs.pop(ref)
            self._busy[actor] = max(0, self._busy.get(actor, 1) - 1)
            try:
                out.append((item, ray.get(ref)))
            except Exception as e:  # the actor or its node died (RayActorError, ActorDiedError, NodeDiedError ...)
                r = self._lost(item, job, actor, e)
                if r is not None:
                    out.append((item, r))
        return out

    def _lost(self, item: Item, job: dict, actor, e: Exception) -> FileResult | None:
        """A worker died under ``item``: replace it and resubmit, or fail the item after MAX_LOSSES."""
        self.restarts += 1
        if actor in self._busy:
            self._replace(actor)
        key = id(item)
        self._losses[key] = self._losses.get(key, 0) + 1
        remove_temp_files(item.outputs)
        if self._losses[key] >= MAX_LOSSES or not self._actors:
            why = type(e).__name__
            return FileResult(item.key, "failed", error=f"{item.label}: its Ray worker was lost {self._losses[key]} times ({why})")
        self._dispatch(item, job)
        return None

    def _replace(self, dead) -> None:
        """Drop a dead actor, and start a replacement where the cluster has a free CPU (a lost node's CPUs are
        gone: the remaining workers carry on); calls queued on the dead actor go to the others."""
        ray = self._ray
        stranded = [(ref, v) for ref, v in self._refs.items() if v[2] is dead]
        self._actors = [a for a in self._actors if a is not dead]
        self._busy.pop(dead, None)
        try:
            free = ray.available_resources()
        except Exception:
            free = {}
        if free.get("CPU", 0) >= 1 and free.get("GPU", 0) >= self.gpus_per_worker:
            new = self._new_actor(self._factory)
            self._actors.append(new)
            self._busy[new] = 0
        self.capacity = 2 * len(self._actors)
        for ref, (item, job, _) in stranded:
            self._refs.pop(ref, None)
            if self._actors:
                self._dispatch(item, job)

    def cancel(self) -> list[Item]:
        """Abandon the items in flight: the workers are killed (Ray cannot stop a running actor call
        otherwise) and started again on the next :meth:`submit`."""
        ray = self._ray
        items = [item for item, _, _ in self._refs.values()]
        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self._actors, self._busy, self._refs = [], {}, {}
        for item in items:
            remove_temp_files(item.outputs)
        return items
