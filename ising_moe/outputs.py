"""A command's outputs as one unit: locks, staging, and the cleanup of dead runs' leftovers.

Every command that writes files goes through :func:`output_unit`:

1. it takes a lock on the primary output (``.NAME.lock`` beside it, created with ``O_EXCL`` and
   holding the PID and its start time), so a second writer to the same output stops at once;
   a lock whose process is dead is stale and taken over;
2. it removes the leftovers of dead processes in the output directory: temporary files
   ``.NAME.tmp-PID`` and staging directories ``.NAME.stage-PID`` (a staging directory whose
   process died while moving its files into place is finished instead, see step 4);
3. it refuses (:class:`~ising_moe.errors.OutputExistsError`) if any declared output exists,
   unless ``overwrite``, before any work is done;
4. the command writes every file into a private staging directory (:meth:`OutputUnit.path`); on
   success a commit record is written, the files are moved into place with :func:`os.replace`
   (the primary output last) and the staging directory is removed. A run killed before the
   commit leaves nothing visible; one killed during it is completed by the next run.

An unwritable output directory is reported up front as
:class:`~ising_moe.errors.OutputNotWritableError`, before any computation.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import DiskFullError, OutputExistsError, OutputLockedError, OutputNotWritableError

__all__ = [
    "OutputUnit",
    "acquire_lock",
    "check_target",
    "clean_stale",
    "describe_path",
    "disk_full",
    "disk_full_error",
    "output_unit",
    "pid_alive",
    "release_lock",
    "temp_path",
]

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|stage)-(?P<pid>\d+)$")
_COMMIT = "commit.json"
_held: dict[Path, int] = {}
_held_guard = threading.Lock()


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _start_time(pid: int) -> str:
    """Start time of a process (Linux: clock ticks since boot; elsewhere empty): guards against
    a stale lock's PID having been reused by another process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def temp_path(path: Path) -> Path:
    """The temporary name of ``path`` while this process writes it: ``.NAME.tmp-PID``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _not_writable(directory: Path, exc: OSError) -> OutputNotWritableError:
    reason = exc.strerror or type(exc).__name__
    return OutputNotWritableError(f"cannot write in {directory}/ ({reason.lower()}): choose another output "
                                  "path (-o/--output) or fix the directory's permissions")


def _ensure_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputNotWritableError(f"{directory} exists and is not a directory: choose another output path") from None
    except OSError as exc:
        raise _not_writable(directory, exc) from None


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def full_errno(exc: BaseException) -> int | None:
    """The errno of ``exc`` when it says that a device is full or a quota or file-size limit is reached
    (``ENOSPC``, ``EDQUOT``, ``EFBIG``), else None. Writers in Rust and C++ (safetensors, tokenizers,
    torch) raise their own exception types whose message holds the OS error: it is read from there."""
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in _FULL else None
    text = str(exc)
    match = re.search(r"os error (\d+)", text)
    if match is not None:
        return int(match.group(1)) if int(match.group(1)) in _FULL else None
    return next((e for e in _FULL if os.strerror(e) in text), None)


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says that a device is full or a quota or file-size limit is reached."""
    return full_errno(exc) is not None


def disk_full_error(path, exc: BaseException) -> DiskFullError:
    """The one-line error of a write to ``path`` that found the device full."""
    path = Path(path)
    if _LEFTOVER.match(path.parent.name):  # a staged output: name the file the user asked for
        path = path.parent.parent / path.name
    code = full_errno(exc) or errno.ENOSPC
    return DiskFullError(f"cannot write {path}: {os.strerror(code).lower()}: free some space and rerun, or choose "
                         "another output (-o/--output); no half-written output was left")


def describe_path(path) -> str | None:
    """What occupies ``path``: ``None`` (nothing), ``"a file"``, ``"a directory"`` or ``"a symbolic
    link to TARGET"`` (with ``", dangling"`` or ``", a loop"`` when it leads nowhere)."""
    path = Path(path)
    if path.is_symlink():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        try:
            path.stat()
            state = ""
        except FileNotFoundError:
            state = ", dangling"
        except OSError:
            state = ", a loop"
        return f"a symbolic link to {target}{state}"
    if path.is_dir():
        return "a directory"
    return "a file" if os.path.lexists(path) else None


def check_parents(path) -> None:
    """Refuse an output whose directory path runs through a file (``-o file.txt/out.h5``)."""
    for parent in Path(path).absolute().parents:
        if parent.is_dir():
            return
        if os.path.lexists(parent):
            raise OutputNotWritableError(f"{parent} is {describe_path(parent)}, not a directory: choose another output "
                                         "path (-o/--output)")


def check_target(path, overwrite: bool, *, directory: bool = False) -> None:
    """Refuse an output path that is taken (a file, a directory, or any symbolic link, even a dangling
    one or a loop) unless ``overwrite``, or that cannot be a ``directory``/file at all.

    Raises
    ------
    OutputExistsError
        Something is at ``path`` and ``overwrite`` is False (the message says what).
    InvalidParameterError
        A directory where a file is expected, or the other way round.
    OutputNotWritableError
        A component of the directory path is a file.
    """
    from .errors import InvalidParameterError

    path = Path(path)
    check_parents(path)
    what = describe_path(path)
    if what is None:
        return
    if not overwrite:
        detail = "" if what in ("a file", "a directory") else f" ({what})"
        raise OutputExistsError(f"{path} exists{detail}: pass --overwrite to replace it")
    if what == "a directory" and not directory:
        raise InvalidParameterError(f"{path} is a directory, expected a file path")
    if what == "a file" and directory:
        raise InvalidParameterError(f"{path} is a file, expected a directory path")


def _lock_owner(lock: Path) -> tuple[int, str] | None:
    try:
        pid, _, started = lock.read_text().strip().partition(" ")
        return int(pid), started
    except (OSError, ValueError):
        return None


def acquire_lock(path) -> Path:
    """Take the writer's lock of output ``path`` (re-entrant within one process).

    Raises
    ------
    OutputLockedError
        Another live process holds it.
    OutputNotWritableError
        The directory cannot be created or written.
    """
    path = Path(path).absolute()
    lock = _lock_path(path)
    with _held_guard:
        if path in _held:
            _held[path] += 1
            return lock
        _ensure_directory(path.parent)
        record = f"{os.getpid()} {_start_time(os.getpid())}"
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _lock_owner(lock)
                if owner is not None and owner[0] != os.getpid() and pid_alive(owner[0]) and (
                        not owner[1] or owner[1] == _start_time(owner[0])):
                    raise OutputLockedError(
                        f"{path} is being written by another process (PID {owner[0]}): wait for it to finish, "
                        f"or choose another output") from None
                if owner is None:  # being written by its creator at this instant, or damaged
                    import time

                    time.sleep(0.05)
                    if _lock_owner(lock) is None and lock.exists():
                        lock.unlink(missing_ok=True)
                    continue
                lock.unlink(missing_ok=True)  # stale: its process is dead
                continue
            except OSError as exc:
                raise _not_writable(path.parent, exc) from None
            with os.fdopen(fd, "w") as fh:
                fh.write(record)
            _held[path] = 1
            return lock
        raise OutputLockedError(f"cannot take the lock {lock}: another process keeps taking it")


def release_lock(path) -> None:
    """Release one hold of the lock of ``path``; the lock file goes with the last one."""
    path = Path(path).absolute()
    with _held_guard:
        if path not in _held:
            return
        _held[path] -= 1
        if _held[path] > 0:
            return
        del _held[path]
        lock = _lock_path(path)
        owner = _lock_owner(lock)
        if owner is not None and owner[0] == os.getpid():
            lock.unlink(missing_ok=True)


@atexit.register
def _release_all() -> None:  # an exit (sys.exit(2) included) never leaves this process's locks behind
    for path in list(_held):
        _held[path] = 1
        release_lock(path)


def clean_stale(directory) -> list[Path]:
    """Remove the temporaries and staging directories of dead processes in ``directory``.

    A staging directory holding a commit record belonged to a run that died while moving its
    finished outputs into place: the move is completed instead. Returns what was removed.
    """
    directory = Path(directory)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if match is None or pid_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        try:
            if match["what"] == "stage" and entry.is_dir(follow_symlinks=False):
                _finish_commit(path)
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(path)
    return removed


def _finish_commit(stage: Path) -> None:
    record = stage / _COMMIT
    if not record.is_file():
        return
    try:
        plan = json.loads(record.read_text())
        moves, discard = plan["moves"], plan["discard"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for name in moves:
        src = stage / name
        if src.exists():
            os.replace(src, stage.parent / name)
    for name in discard:
        shutil.rmtree(stage.parent / name, ignore_errors=True)


class OutputUnit:
    """The files of one command, staged and moved into place together (see :func:`output_unit`)."""

    def __init__(self, primary: Path, stage: Path):
        self.primary = primary
        self.stage = stage
        self._after_commit: list[Callable[[], None]] = []
        self._discard: list[str] = []

    def path(self, target) -> Path:
        """Where to write ``target`` (a file in the primary output's directory) until the commit."""
        target = Path(target)
        if target.absolute().parent != self.primary.parent:
            raise ValueError(f"{target} is not in the output directory {self.primary.parent}")
        self.stage.mkdir(exist_ok=True)
        return self.stage / target.name

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the outputs are in place."""
        self._after_commit.append(action)

    def discard_after_commit(self, path) -> None:
        """Delete ``path`` (a resumable job's partial directory beside the outputs) once the outputs
        are in place; part of the commit record, so a commit completed by a later run does it too."""
        path = Path(path).absolute()
        if path.parent != self.primary.parent:
            raise ValueError(f"{path} is not in the output directory {self.primary.parent}")
        self._discard.append(path.name)

    def _commit(self, overwrite: bool, declared: Iterable[Path]) -> list[Path]:
        names = sorted(p.name for p in self.stage.iterdir()) if self.stage.exists() else []
        targets = [self.primary.parent / n for n in names]
        if not overwrite:
            existing = [t for t in targets if os.path.lexists(t)]
            if existing:
                raise OutputExistsError(f"{existing[0]} exists: pass --overwrite to replace it")
        order = [n for n in names if n != self.primary.name] + [n for n in names if n == self.primary.name]
        (self.stage / _COMMIT).write_text(json.dumps({"moves": order, "discard": self._discard}))
        if overwrite:  # declared outputs this run did not produce would be stale next to the new ones
            for target in declared:
                if target.name not in names and (target.is_file() or target.is_symlink()):
                    target.unlink()
        for name in order:
            os.replace(self.stage / name, self.primary.parent / name)
        for name in self._discard:
            shutil.rmtree(self.primary.parent / name, ignore_errors=True)
        shutil.rmtree(self.stage, ignore_errors=True)
        for action in self._after_commit:
            action()
        return [self.primary.parent / n for n in order]


@contextlib.contextmanager
def output_unit(primary, *, others: Iterable = (), overwrite: bool = False) -> Iterator[OutputUnit]:
    """Lock, check and stage the outputs of one command; move them into place together on success.

    Parameters
    ----------
    primary : path-like
        The main output file (its presence means the command finished). Written last.
    others : iterable of path-like
        Further outputs the command may write (figures, summaries), in the same directory; any
        that exists is refused up front unless ``overwrite``.
    overwrite : bool
        Replace existing outputs (declared outputs not produced this time are removed).

    Yields
    ------
    OutputUnit
        ``unit.path(target)`` is where to write ``target``.
    """
    primary = Path(primary).absolute()
    declared = [primary] + [Path(p).absolute() for p in others]
    if primary.is_dir():
        raise OutputExistsError(f"{primary} is a directory, expected a file path")
    check_parents(primary)
    created = [d for d in primary.parents if not d.exists()]  # deepest first; removed again if left empty
    acquire_lock(primary)
    try:
        clean_stale(primary.parent)
        for target in declared:
            check_target(target, overwrite)
        unit = OutputUnit(primary, primary.with_name(f".{primary.name}.stage-{os.getpid()}"))
        try:
            yield unit
            unit._commit(overwrite, declared)
        except OSError as exc:
            if disk_full(exc):
                raise disk_full_error(primary, exc) from None
            raise
        finally:
            shutil.rmtree(unit.stage, ignore_errors=True)
    finally:
        release_lock(primary)
        for directory in created:
            try:
                directory.rmdir()
            except OSError:  # holds outputs or a resumable job's partial work
                break
