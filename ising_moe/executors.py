"""Where independent tasks run: in this process, in local worker processes, or on a Dask cluster.

Every part of ising-moe that runs independent tasks (sweep points, per-layer fits, per-layer
measurements) takes an ``executor=`` argument, any :class:`concurrent.futures.Executor`, and uses
only ``submit`` and ``result``. Tasks are picklable top-level functions that receive their own seed
(spawned from the user's seed with :class:`numpy.random.SeedSequence`), so results are
bit-identical whatever the executor, the number of workers or the order in which tasks finish.
Outside this process each task runs with one Numba thread (the workers already share the cores).

From the command line, ``--executor`` takes:

``serial``
    Every task in this process, one after the other (the default).
``processes[:N]``
    ``N`` local worker processes (default: the number of CPU cores). Workers exit when their
    parent dies, even when it is killed with SIGKILL.
``dask[:ADDRESS]``
    A Dask distributed cluster: the scheduler at ``ADDRESS`` (``tcp://host:8786``), or without
    one a local cluster with one single-threaded worker process per core. Needs the ``dask``
    extra (``pip install 'ising-moe[dask]'``). With ``dask-jobqueue`` any SLURM/PBS/SGE cluster
    works the same way: start the cluster, pass its ``scheduler_address``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from typing import Any

from .errors import (
    ExecutorUnavailableError,
    InvalidParameterError,
    MissingDependencyError,
)

log = logging.getLogger(__name__)

__all__ = [
    "EXECUTOR_HELP",
    "SerialExecutor",
    "open_executor",
    "parse_executor",
    "process_executor",
    "run_tasks",
]

EXECUTOR_HELP = ("Where tasks run: serial, processes[:N] (local worker processes) or dask[:ADDRESS] "
                 "(a Dask scheduler; without ADDRESS a local Dask cluster).")


class SerialExecutor(Executor):
    """An executor that runs each task in the calling thread when it is submitted."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # KeyboardInterrupt included: it surfaces at .result()
            if not isinstance(exc, Exception):
                raise
            future.set_exception(exc)
        return future


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone (even by SIGKILL): never compute for nobody
        time.sleep(0.2)


def _init_worker(parent: int) -> None:
    """Worker-process initialiser: one Numba thread, and exit when the parent dies."""
    os.environ["NUMBA_NUM_THREADS"] = "1"
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="ising-moe-parent-watch").start()


def process_executor(n_workers: int | None = None) -> ProcessPoolExecutor:
    """A pool of local worker processes (``spawn``: forking after Numba's threads ran is unsafe)
    whose workers exit when this process dies."""
    import multiprocessing

    n_workers = n_workers or os.cpu_count() or 1
    return ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))


def parse_executor(spec: str) -> tuple[str, Any]:
    """``serial`` / ``processes[:N]`` / ``dask[:ADDRESS]`` as ``(kind, argument)``.

    Raises
    ------
    InvalidParameterError
        Any other text.
    """
    kind, _, arg = str(spec).strip().partition(":")
    if kind == "serial" and not arg:
        return "serial", None
    if kind == "processes":
        if not arg:
            return "processes", None
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n < 1:
            raise InvalidParameterError(f"--executor processes:N needs a worker count N >= 1, got {arg!r}")
        return "processes", n
    if kind == "dask":
        return "dask", arg or None
    raise InvalidParameterError(
        f"--executor must be serial, processes[:N] or dask[:ADDRESS], got {spec!r}")


def _dask_client(address: str | None, timeout: float):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingDependencyError(
            "--executor dask needs Dask distributed: install it with `pip install 'ising-moe[dask]'`") from None
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        # Dask logs every scheduler event at INFO and start/stop chatter at WARNING; task errors
        # reach us through the futures anyway (-v shows it all)
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if address is None:
        cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(address, timeout=timeout), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ExecutorUnavailableError(
            f"no Dask scheduler answers at {address} ({type(exc).__name__}): start one (`dask scheduler`) "
            "or check the address") from None


@contextlib.contextmanager
def open_executor(spec: str | Executor | None = "serial", *, connect_timeout: float = 5.0) -> Iterator[Executor]:
    """The executor described by ``spec`` (see :func:`parse_executor`), shut down on exit.

    An :class:`~concurrent.futures.Executor` instance is passed through (and not shut down).
    """
    if isinstance(spec, Executor):
        yield spec
        return
    kind, arg = parse_executor(spec or "serial")
    if kind == "serial":
        yield SerialExecutor()
    elif kind == "processes":
        pool = process_executor(arg)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        client, cluster = _dask_client(arg, connect_timeout)
        try:
            yield client.get_executor()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _single_threaded(fn: Callable, args: tuple) -> Any:
    """Run ``fn(*args)`` with one Numba thread (in a worker that shares the machine's cores)."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        numba.set_num_threads(previous)


def run_tasks(executor: Executor | None, fn: Callable, tasks: Iterable[tuple]) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*task)`` for every task; yield ``(index, result)`` as they finish.

    ``fn`` must be a picklable top-level function and each task carry its own seed: the results
    then do not depend on the executor. ``None`` runs the tasks here, in order. Outside the
    :class:`SerialExecutor` each task runs with one Numba thread. Pending tasks are cancelled when
    the caller stops early or a task fails; after a failure the tasks already running still
    deliver their results (a resumable caller keeps them), then the first error is raised.
    """
    tasks = list(tasks)
    if executor is None or isinstance(executor, SerialExecutor):
        for index, task in enumerate(tasks):
            yield index, fn(*task)
        return
    futures = {executor.submit(_single_threaded, fn, task): index for index, task in enumerate(tasks)}
    error = None
    try:
        for future in as_completed(futures):
            if future.cancelled():
                continue
            if future.exception() is not None:
                if error is None:
                    error = future.exception()
                    for other in futures:
                        other.cancel()
                continue
            yield futures[future], future.result()
    finally:
        for future in futures:
            future.cancel()
    if error is not None:
        raise error
