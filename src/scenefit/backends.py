"""Where shards run: ``local`` (this process, one shard after another) or ``ray`` (a pool of actors, one per worker).

Both run the same :class:`scenefit.shards.ShardWorker` on the same shards, so they give the same dataset. With Ray,
each actor keeps its networks and its engine (a GL context for the street engine) loaded between shards, writes its
shards straight to the output path, which every node must see (a shared filesystem, or the local disk on one
machine), and is restarted by Ray with its unfinished shard retried if its process dies. Ray is optional:
``pip install 'scenefit[ray]'``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable

from tqdm.auto import tqdm

from scenefit.shards import Shard, ShardWorker

BACKENDS = ("local", "ray")


def require_ray() -> ModuleType:
    """The ``ray`` module, or ``ValueError`` with the install hint."""
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'scenefit[ray]'") from None
    return ray


def run_shards(worker_args: dict, shards: list[Shard], backend: str = "local", workers: int = 1, ray_address: str | None = None,
               threads: int | None = None, gpu: bool = False, progress: bool = True,
               on_done: Callable[[dict, list], None] | None = None) -> list[dict]:
    """Run ``shards`` with :class:`ShardWorker(**worker_args) <scenefit.shards.ShardWorker>` on ``backend``; returns each
    shard's record in completion order.

    ``workers``: Ray actors (local: ignored). ``threads``: torch threads per worker (Ray default 1). ``gpu``: give each
    actor ``1 / workers`` of a GPU. ``on_done(record, actors)``: called after every shard (``actors`` is empty for local).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = tqdm(total=sum(len(s.files) for s in shards), desc=f"fit + export ({backend})", unit="target", disable=not progress)
    records: list[dict] = []

    def record(rec: dict, actors: list) -> None:
        records.append(rec)
        bar.update(rec["targets"])
        if on_done is not None:
            on_done(rec, actors)

    try:
        if backend == "local":
            worker = ShardWorker(**worker_args, threads=threads)
            try:
                for s in shards:
                    record(worker.run(s), [])
            finally:
                worker.close()
        else:
            _run_ray(worker_args, shards, workers, ray_address, threads or 1, gpu, record)
    finally:
        bar.close()
    return records


def _run_ray(worker_args: dict, shards: list[Shard], workers: int, address: str | None, threads: int, gpu: bool, record) -> None:
    ray = require_ray()
    from ray.util import ActorPool

    owned = not ray.is_initialized()
    if owned:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": max(workers * threads, 1)}))
    try:
        cpus = ray.cluster_resources().get("CPU", 1.0)
        per = min(float(threads), cpus / workers)
        remote = ray.remote(ShardWorker).options(num_cpus=per, num_gpus=(1.0 / workers if gpu else 0), max_restarts=-1,
                                                 max_task_retries=-1)
        actors = [remote.remote(**worker_args, threads=threads) for _ in range(workers)]
        pool = ActorPool(actors)
        for rec in pool.map_unordered(lambda a, s: a.run.remote(s), shards):
            record(rec, actors)
        for a in actors:
            ray.get(a.close.remote())
    finally:
        if owned:
            ray.shutdown()
