"""Sharded extraction: N processes (CPU cores or GPUs), one model replica each, one output file.

Every rank encodes the same corpus and cuts it into the same batches as a single process would;
rank ``r`` of ``N`` takes a contiguous range of batches (:func:`shard_range`) and stages each batch
as its own chunk, indexed by the global batch number, in the output's shared staging directory
(:class:`~ising_moe.io.ChunkStore`). Rank 0 opens the staging directory before the others start
and, when every rank has finished, merges the chunks exactly as a single process does, so the
datasets are bit-identical to a single-process run of the same command, and a killed run resumes
per batch with any number of shards. The ranks only synchronise (barriers of ``torch.distributed``
over gloo): no tensor is exchanged, so the same code runs under ``torchrun`` on GPUs (rank ``r``
uses ``cuda:LOCAL_RANK``) or from ``isingmoe extract --shards N``, which starts the processes
itself (:func:`run_sharded`). All ranks must see the output's directory (one machine, or a shared
file system).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import multiprocessing
import os
import queue as _queue
import signal
import socket
import time
import traceback
from dataclasses import dataclass

from .. import errors

log = logging.getLogger(__name__)

__all__ = ["Rank", "current_rank", "shard_range", "process_group", "run_sharded"]

#: how long a rank waits for the others at a barrier (the last barrier waits for the slowest shard)
BARRIER_TIMEOUT = _dt.timedelta(hours=48)


@dataclass(frozen=True)
class Rank:
    """This process's place in a sharded run (``rank 0 of 1`` when not sharded)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def sharded(self) -> bool:
        return self.world > 1


def current_rank() -> Rank:
    """The rank from the environment of ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise errors.InvalidParameterError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise errors.InvalidParameterError(f"invalid distributed environment: RANK={rank}, WORLD_SIZE={world}")
    return Rank(rank, world, local)


def shard_range(n_items: int, world: int, rank: int) -> range:
    """The contiguous share of ``rank`` among ``world`` (sizes differ by at most one, larger first)."""
    base, extra = divmod(n_items, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


@contextlib.contextmanager
def process_group(rank: Rank):
    """A gloo process group for the barriers of a sharded run (nothing when not sharded)."""
    if not rank.sharded:
        yield lambda: None
        return
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("gloo", rank=rank.rank, world_size=rank.world, timeout=BARRIER_TIMEOUT)
    try:
        yield dist.barrier
    finally:
        if owned:
            dist.destroy_process_group()


def _die_with_parent() -> None:
    """Ask Linux to end this worker when its parent dies (also by SIGKILL): no orphans."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, kwargs: dict, results) -> None:
    _die_with_parent()
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    try:
        import torch

        if not str(kwargs.get("device") or "cpu").startswith("cuda"):
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        from .run import extract

        results.put((rank, "ok", extract(**kwargs)))
    except errors.IsingMoeError as exc:
        results.put((rank, "error", (type(exc).__name__, str(exc))))
    except BaseException as exc:  # a bug: the parent re-raises it with this traceback
        results.put((rank, "crash", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_sharded(n_shards: int, kwargs: dict):
    """Run :func:`~ising_moe.extract.extract` in ``n_shards`` processes started here; rank 0's result.

    A rank's error stops every rank and is raised here (the same named error, one line).
    """
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = []
    for rank in range(n_shards):
        args = dict(kwargs, progress=bool(kwargs.get("progress")) and rank == 0)
        procs.append(ctx.Process(target=_worker, args=(rank, n_shards, port, args, results), daemon=True,
                                 name=f"isingmoe-extract-shard-{rank}"))
    for proc in procs:
        proc.start()
    done: dict[int, object] = {}
    failures: list[tuple[int, str, object]] = []
    deadline = None  # after a first failure, a moment to collect the other ranks' reports
    try:
        while len(done) + len(failures) < n_shards and (deadline is None or time.monotonic() < deadline):
            try:
                rank, status, payload = results.get(timeout=0.5)
            except _queue.Empty:
                reported = set(done) | {r for r, _, _ in failures}
                dead = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode not in (None, 0)
                        and i not in reported]
                for i, code in dead:
                    failures.append((i, "crash", f"shard {i} died with exit code {code}"))
                if failures and deadline is None:
                    deadline = time.monotonic() + 2.0
                continue
            if status == "ok":
                done[rank] = payload
            else:
                failures.append((rank, status, payload))
                if deadline is None:
                    deadline = time.monotonic() + 2.0
    finally:
        if failures or len(done) < n_shards:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
        for proc in procs:
            proc.join()
    if failures:
        # a user error of any rank (the same on every rank) explains the others' broken barriers
        failures.sort(key=lambda f: (f[1] != "error", f[0]))
        _, status, payload = failures[0]
        if status == "error":
            name, message = payload
            cls = getattr(errors, name, errors.IsingMoeError)
            raise cls(message)
        raise RuntimeError(f"a shard of the extraction failed: {payload}")
    return done[0]
