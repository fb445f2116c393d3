"""HDF5 and JSON layer with provenance: every writer in ising-moe goes through this module.

Every output file carries the attributes ``schema_version``, ``ising_moe_version``, ``kind``,
``created`` (UTC, ISO 8601), ``params`` (the full parameters as one JSON string), ``seed`` (``-1``
when none) and ``finished``, written last. Writers are atomic (a temporary file in the same
directory, then :func:`os.replace`) and refuse to replace an existing file unless
``overwrite=True``. Long jobs stage their work in a :class:`ChunkStore` so that a run killed at any
moment continues where it stopped and ends with the same file as an uninterrupted run.

Readers validate the schema and raise :class:`~ising_moe.errors.DataFormatError` on anything
malformed: a missing or corrupt attribute or dataset, a wrong dtype or shape, an unfinished file,
or a newer schema.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._version import __version__
from .errors import DataFormatError, InvalidParameterError
from .outputs import acquire_lock, clean_stale, disk_full, disk_full_error, release_lock, temp_path

__all__ = [
    "SCHEMA_VERSION",
    "atomic_h5",
    "atomic_write_bytes",
    "open_h5",
    "read_array",
    "read_params",
    "write_array",
    "stream_array",
    "write_json",
    "read_json",
    "file_sha256",
    "ChunkStore",
    "utc_now",
    "strict_jsonable",
]

SCHEMA_VERSION = 1
_REQUIRED_ATTRS = ("schema_version", "ising_moe_version", "kind", "created", "params", "seed", "finished")


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _jsonable(obj: Any):
    """``json.dumps`` default: NumPy scalars and arrays, paths, tuples."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def strict_jsonable(obj: Any, notes: dict[str, str] | None = None, key: str = ""):
    """A copy of ``obj`` that strict JSON can hold: non-finite floats become ``None`` (null).

    ``json.dumps`` writes NaN and infinities as bare ``NaN``/``Infinity``, which is not JSON; every
    JSON output of ising-moe (``--json``, summaries) goes through this function. With ``notes``,
    each replaced value is recorded under its path (``"rows[2].z": "+inf"``).
    """
    def child(value, path):
        return strict_jsonable(value, notes, path)

    if isinstance(obj, float | np.floating):
        value = float(obj)
        if np.isfinite(value):
            return value
        if notes is not None:
            notes[key] = "nan (undefined)" if np.isnan(value) else ("+inf" if value > 0 else "-inf")
        return None
    if isinstance(obj, Mapping):
        return {(str(k) if not isinstance(k, str | int | float | bool) and k is not None else k):
                child(v, f"{key}.{k}" if key else str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj) if isinstance(obj, set | frozenset) else obj
        return [child(v, f"{key}[{i}]") for i, v in enumerate(items)]
    if isinstance(obj, np.ndarray):
        return child(obj.tolist(), key)
    if isinstance(obj, np.generic):
        return child(obj.item(), key)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def strict_json(obj: Any, **kwargs) -> str:
    """Strict JSON text of ``obj`` (see :func:`strict_jsonable`); raises on anything else non-JSON."""
    return json.dumps(strict_jsonable(obj), default=_jsonable, allow_nan=False, **kwargs)


def to_json(obj: Any) -> str:
    """Canonical JSON (sorted keys) used for ``params`` attributes and manifests."""
    return json.dumps(obj, sort_keys=True, default=_jsonable)


def provenance(kind: str, params: Mapping[str, Any], seed: int | None = None,
               created: str | None = None) -> dict[str, Any]:
    """The provenance record of one output (without ``finished``)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "ising_moe_version": __version__,
        "kind": kind,
        "created": created or utc_now(),
        "params": to_json(dict(params)),
        "seed": -1 if seed is None else int(seed),
    }


def write_provenance(obj: h5py.Group, kind: str, params: Mapping[str, Any], seed: int | None = None,
                     created: str | None = None) -> None:
    """Write provenance attributes on a file or group, with ``finished = False``."""
    for key, value in provenance(kind, params, seed, created).items():
        obj.attrs[key] = value
    obj.attrs["finished"] = False


def _check_target(path: Path, overwrite: bool) -> None:
    from .outputs import _ensure_directory, check_target

    check_target(path, overwrite)
    _ensure_directory(path.parent)
    clean_stale(path.parent)


_temp_path = temp_path


class _GuardedFile(io.RawIOBase):
    """The file object under an HDF5 file being written (h5py's ``fileobj`` driver).

    HDF5 2.0 cannot recover from a failed write: a flush that fails on a full disk leaves its dataset
    identifiers half-closed, and its exit handler then dereferences them (a segmentation fault at
    interpreter exit, after the ``OSError``). This file never reports a failed write to HDF5: the
    first ``OSError`` is kept in :attr:`error`, and from then on writes go to an in-memory overlay that
    reads see, so HDF5 stays consistent and closes cleanly; :func:`atomic_h5` then deletes the file
    and raises. Writes before the failure go to the disk as usual.
    """

    def __init__(self, path: Path):
        super().__init__()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        self.error: OSError | None = None
        self._overlay: list[tuple[int, bytes]] = []
        self._pos = 0
        self._size = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data) -> int:
        data = bytes(data)
        if self.error is None:
            try:
                done = 0
                while done < len(data):
                    done += os.pwrite(self._fd, data[done:], self._pos + done)
            except OSError as exc:
                self.error = exc
        if self.error is not None:
            self._overlay.append((self._pos, data))
        self._pos += len(data)
        self._size = max(self._size, self._pos)
        return len(data)

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        data = bytearray(os.pread(self._fd, n, self._pos).ljust(n, b"\0"))
        for offset, chunk in self._overlay:
            lo, hi = max(offset, self._pos), min(offset + len(chunk), self._pos + n)
            if lo < hi:
                data[lo - self._pos:hi - self._pos] = chunk[lo - offset:hi - offset]
        buffer[:n] = data
        if len(buffer) > n:  # past the end reads as zeros (as HDF5's own POSIX driver has it)
            buffer[n:] = bytes(len(buffer) - n)
        self._pos += n
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self.error = exc
        self._size = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
            self._overlay.clear()
        super().close()


@contextlib.contextmanager
def atomic_h5(path, *, kind: str, params: Mapping[str, Any], seed: int | None = None,
              overwrite: bool = False, created: str | None = None, attrs: Mapping[str, Any] | None = None
              ) -> Iterator[h5py.File]:
    """Write an HDF5 file atomically, with provenance; ``finished`` is set last.

    Parameters
    ----------
    path : path-like
        Final location. A temporary file beside it is renamed onto it on success and removed on
        failure, so readers never see a half-written file.
    kind : str
        What the file holds (``"experts"``, ``"stats"``, ``"fit"``, ``"exact"``, ``"mc"``, ``"sweep"``).
    params : mapping
        Full parameters (stored as one JSON string attribute).
    seed : int, optional
    overwrite : bool, default False
        Replace an existing file; otherwise :class:`OutputExistsError`.
    created : str, optional
        Creation time to record (resumed jobs pass the time of their first start).
    attrs : mapping, optional
        Extra root attributes (e.g. ``model_id``, ``weights``).
    """
    path = Path(path)
    _check_target(path, overwrite)
    tmp = _temp_path(path)
    guard = None
    try:
        guard = _GuardedFile(tmp)
        try:
            with h5py.File(guard, "w", track_order=True) as f:
                write_provenance(f, kind, params, seed, created)
                for key, value in (attrs or {}).items():
                    f.attrs[key] = value
                yield f
                f.attrs["finished"] = True
        except Exception:
            if guard.error is not None:  # whatever HDF5 made of the lost writes, the cause is the disk
                raise disk_full_error(path, guard.error) from None
            raise
        if guard.error is not None:
            raise disk_full_error(path, guard.error) if disk_full(guard.error) else guard.error
        guard.close()
        os.replace(tmp, path)
    except OSError as exc:
        if disk_full(exc):
            raise disk_full_error(path, exc) from None
        raise
    finally:
        if guard is not None:
            guard.close()
        if tmp.exists():
            tmp.unlink()


def open_h5(path, kind: str | Sequence[str] | None = None, require_finished: bool = True) -> h5py.File:
    """Open an ising-moe HDF5 file for reading and validate its provenance.

    Raises
    ------
    DataFormatError
        Not an HDF5 file, truncated, missing or malformed provenance, other ``kind``, newer
        schema, or unfinished (when ``require_finished``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path} is not a readable HDF5 file ({exc}); it may be truncated") from None
    try:
        _validate_root(f, path, kind, require_finished)
    except DataFormatError:
        f.close()
        raise
    except Exception as exc:  # corrupt metadata can raise anything from h5py's C layer
        f.close()
        raise DataFormatError(f"{path}: corrupt file ({type(exc).__name__}: {exc})") from None
    return f


def _validate_root(f: h5py.File, path: Path, kind, require_finished: bool) -> None:
    missing = [k for k in _REQUIRED_ATTRS if k not in f.attrs]
    if missing:
        raise DataFormatError(
            f"{path} lacks the provenance attribute(s) {', '.join(missing)}: it was not written "
            "by ising-moe or is damaged; regenerate it"
        )
    try:
        schema = int(f.attrs["schema_version"])
        file_kind = _as_str(f.attrs["kind"])
        finished = bool(f.attrs["finished"])
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: malformed provenance attribute ({exc})") from None
    if schema > SCHEMA_VERSION:
        raise DataFormatError(
            f"{path} has schema version {schema}, newer than this ising-moe ({__version__}, schema "
            f"{SCHEMA_VERSION}): upgrade ising-moe to read it"
        )
    if schema < 1:
        raise DataFormatError(f"{path}: invalid schema version {schema}")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and file_kind not in kinds:
        raise DataFormatError(f"{path} holds {file_kind!r} data, expected {' or '.join(kinds)}")
    if require_finished and not finished:
        raise DataFormatError(
            f"{path} is unfinished (the run that wrote it was interrupted): rerun the same command "
            "to resume or regenerate it"
        )
    read_params(f, path)


def _as_str(value) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise DataFormatError(f"expected a string attribute, got {type(value).__name__}")


def read_params(obj: h5py.Group, path=None) -> dict[str, Any]:
    """The ``params`` JSON attribute as a dict."""
    try:
        params = json.loads(_as_str(obj.attrs["params"]))
    except (KeyError, json.JSONDecodeError, DataFormatError) as exc:
        raise DataFormatError(f"{path or obj.file.filename}: malformed 'params' attribute ({exc})") from None
    if not isinstance(params, dict):
        raise DataFormatError(f"{path or obj.file.filename}: 'params' must be a JSON object")
    return params


def read_attr(obj: h5py.Group, name: str, kind: type = str):
    """A validated scalar attribute (``str``, ``int``, ``float`` or ``bool``)."""
    if name not in obj.attrs:
        raise DataFormatError(f"{obj.file.filename}:{obj.name} lacks the attribute {name!r}")
    value = obj.attrs[name]
    try:
        if kind is str:
            return _as_str(value)
        if np.ndim(value) != 0:
            raise ValueError("not a scalar")
        return kind(value)
    except (TypeError, ValueError, DataFormatError) as exc:
        raise DataFormatError(f"{obj.file.filename}:{obj.name} attribute {name!r} is malformed ({exc})") from None


_KIND_NAMES = {"i": "signed integer", "u": "unsigned integer", "f": "floating point", "b": "boolean"}


def read_array(group: h5py.Group, name: str, *, kinds: str | None = None, ndim: int | None = None,
               shape: Sequence[int | None] | None = None, required: bool = True) -> np.ndarray | None:
    """Read a dataset and check its dtype kind (``"iu"``, ``"f"``, ``"b"``), rank and shape.

    ``shape`` entries of ``None`` match any length. Returns ``None`` for a missing optional one.
    """
    where = f"{group.file.filename}:{group.name.rstrip('/')}/{name}"
    try:
        obj = group.get(name)
    except Exception as exc:
        raise DataFormatError(f"{where}: unreadable ({exc})") from None
    if obj is None:
        if required:
            raise DataFormatError(f"{where} is missing: the file is incomplete or not of this kind")
        return None
    if not isinstance(obj, h5py.Dataset):
        raise DataFormatError(f"{where} is not a dataset")
    if kinds is not None and obj.dtype.kind not in kinds:
        wanted = " or ".join(_KIND_NAMES.get(k, k) for k in kinds)
        raise DataFormatError(f"{where} has dtype {obj.dtype}, expected {wanted}")
    if ndim is not None and obj.ndim != ndim:
        raise DataFormatError(f"{where} has {obj.ndim} dimensions, expected {ndim}")
    if shape is not None:
        if len(shape) != obj.ndim or any(s is not None and s != t for s, t in zip(shape, obj.shape)):
            want = tuple("*" if s is None else s for s in shape)
            raise DataFormatError(f"{where} has shape {obj.shape}, expected {want}")
    try:
        return obj[()]
    except Exception as exc:
        raise DataFormatError(f"{where}: unreadable data ({type(exc).__name__}: {exc})") from None


def _dimension(group: h5py.Group, name: str, size: int, resizable: bool, values=None) -> h5py.Dataset:
    """The dimension-scale dataset ``name`` of ``group`` (created on first use)."""
    if name in group:
        scale = group[name]
        if scale.shape[0] != size and not resizable:
            raise ValueError(f"dimension {name!r} already has length {scale.shape[0]}, not {size}")
        return scale
    data = np.arange(size, dtype=np.int64) if values is None else np.asarray(values)
    scale = group.create_dataset(name, data=data, maxshape=(None,) if resizable else None,
                                 chunks=(max(1, min(size, 4096)),) if resizable else None)
    scale.make_scale(name)
    return scale


def _attach(dset: h5py.Dataset, dims: Sequence[str], coords: Mapping[str, Any] | None,
            resizable_first: bool) -> None:
    if len(dims) != dset.ndim:
        raise ValueError(f"{dset.name}: {len(dims)} dimension names for {dset.ndim} dimensions")
    group = dset.parent
    for axis, dim in enumerate(dims):
        values = None if coords is None else coords.get(dim)
        scale = _dimension(group, dim, dset.shape[axis], resizable_first and axis == 0, values)
        dset.dims[axis].attach_scale(scale)
        dset.dims[axis].label = dim


def write_array(group: h5py.Group, name: str, data, dims: Sequence[str],
                coords: Mapping[str, Any] | None = None, compress: bool = True, **attrs) -> h5py.Dataset:
    """Write an array with labelled dimensions (h5py dimension scales, readable by xarray).

    Parameters
    ----------
    dims : sequence of str
        One dimension name per axis (``sequence``, ``layer``, ``position``, ``rank``, ``state``,
        ``distance``, ...). A scale dataset of that name is created in ``group`` on first use,
        holding ``coords[name]`` or ``arange``.
    """
    data = np.asarray(data)
    kwargs = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compress and data.size > 256 else {}
    dset = group.create_dataset(name, data=data, **kwargs)
    _attach(dset, dims, coords, resizable_first=False)
    for key, value in attrs.items():
        dset.attrs[key] = value
    return dset


def stream_array(group: h5py.Group, name: str, tail_shape: Sequence[int], dtype, dims: Sequence[str],
                 coords: Mapping[str, Any] | None = None, chunk_rows: int = 64) -> h5py.Dataset:
    """A resizable, chunked dataset growing along its first axis (for streaming writers).

    Append with :func:`append_rows`.
    """
    tail = tuple(int(t) for t in tail_shape)
    dset = group.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
                                chunks=(chunk_rows, *tail), compression="gzip", compression_opts=4,
                                shuffle=True)
    _attach(dset, dims, coords, resizable_first=True)
    return dset


def append_rows(dset: h5py.Dataset, rows) -> None:
    """Append ``rows`` along the first axis of a streaming dataset (and of its first scale)."""
    rows = np.asarray(rows)
    start = dset.shape[0]
    dset.resize(start + rows.shape[0], axis=0)
    dset[start:] = rows
    for scale in dset.dims[0].values():
        if scale.shape[0] < dset.shape[0]:
            old = scale.shape[0]
            scale.resize(dset.shape[0], axis=0)
            scale[old:] = np.arange(old, dset.shape[0])


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a fsynced temporary beside it, then a rename (a
    reader sees the old file or the new one, never a part)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (links derived outputs to their inputs)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path, payload: Mapping[str, Any], *, kind: str, params: Mapping[str, Any],
               seed: int | None = None, overwrite: bool = False) -> None:
    """Write a JSON document atomically with the provenance keys, ``finished`` last."""
    path = Path(path)
    _check_target(path, overwrite)
    doc = {**provenance(kind, params, seed), "params": json.loads(to_json(dict(params)))}
    doc.update(payload)
    doc["finished"] = True
    tmp = _temp_path(path)
    try:
        tmp.write_text(strict_json(doc, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_json(path, kind: str | None = None) -> dict[str, Any]:
    """Read a JSON document written by :func:`write_json`, validating its provenance."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path}: not a readable JSON document ({exc})") from None
    if not isinstance(doc, dict) or not doc.get("finished"):
        raise DataFormatError(f"{path}: not a finished ising-moe JSON document")
    if kind is not None and doc.get("kind") != kind:
        raise DataFormatError(f"{path} holds {doc.get('kind')!r}, expected {kind!r}")
    if int(doc.get("schema_version", 0)) > SCHEMA_VERSION:
        raise DataFormatError(f"{path} has a newer schema: upgrade ising-moe")
    return doc


class ChunkStore:
    """Crash-safe staging of a long job's results, for resumable writers.

    Chunks live in ``<final>.partial/`` as ``.npz`` files, each written to a temporary name and
    renamed, so a SIGKILL at any moment leaves only whole chunks behind. A manifest holds the job's
    parameters and first start time: a rerun with the same parameters continues; one with other
    parameters is refused (the partial work would be mixed up).

    Parameters
    ----------
    final_path : path-like
        The file that the job will produce.
    kind : str
    params : mapping
        Everything that determines the chunks' content.
    """

    def __init__(self, final_path, kind: str, params: Mapping[str, Any]):
        self.final_path = Path(final_path)
        self.directory = self.final_path.with_name(self.final_path.name + ".partial")
        self.kind = kind
        self.params_json = to_json(dict(params))
        self.created = utc_now()
        self.resumed = False

    def open(self, overwrite: bool = False) -> ChunkStore:
        """Create the staging directory, or check and reuse the one of an interrupted run.

        Takes the writer's lock of the final file (:func:`ising_moe.outputs.acquire_lock`; released
        by :meth:`close` or :meth:`remove`), so two runs never stage into one directory.
        """
        acquire_lock(self.final_path)
        self._locked = True
        clean_stale(self.final_path.parent)  # temporaries of killed runs (e.g. a final write)
        created = overwrite or not self.directory.exists()
        try:
            return self._open(overwrite)
        except BaseException:
            if created:  # e.g. a full disk while writing the manifest: leave no empty staging directory
                shutil.rmtree(self.directory, ignore_errors=True)
            self.close()
            raise

    def close(self) -> None:
        """Release the lock taken by :meth:`open` (the partial work stays for a resume)."""
        if getattr(self, "_locked", False):
            self._locked = False
            release_lock(self.final_path)

    def _open(self, overwrite: bool) -> ChunkStore:
        manifest = self.directory / "manifest.json"
        if overwrite and self.directory.exists():
            shutil.rmtree(self.directory)
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
                same = old["kind"] == self.kind and old["params"] == self.params_json
            except (OSError, KeyError, json.JSONDecodeError):
                same, old = False, {}
            if not same:
                raise InvalidParameterError(
                    f"{self.directory} holds an interrupted run with other parameters: rerun that "
                    "command to finish it, or pass --overwrite to discard it"
                )
            self.created = old["created"]
            self.resumed = True
            for tmp in self.directory.glob("*.tmp*"):  # a chunk being written when its run was killed
                tmp.unlink(missing_ok=True)
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._atomic_write(manifest, json.dumps(
                {"kind": self.kind, "params": self.params_json, "created": self.created}).encode())
        return self

    def _atomic_write(self, path: Path, data: bytes) -> None:
        atomic_write_bytes(path, data)  # one seam for the store's writes (tests inject kills here)

    def _chunk_path(self, index: int) -> Path:
        return self.directory / f"chunk-{index:07d}.npz"


    def done(self) -> set[int]:
        """Indices of the chunks already written."""
        return {int(p.stem.split("-")[1]) for p in self.directory.glob("chunk-*.npz")} | \
            {int(p.stem.split("-")[1]) for p in self.directory.glob("chunk-*.pkl")}

    def write_object(self, index: int, obj: Any) -> None:
        """Store a picklable result object as chunk ``index`` (for results that are not arrays).

        Only for the job's own staging directory: :meth:`read_object` unpickles, so a partial
        directory from an untrusted source must never be resumed.
        """
        import pickle

        self._atomic_write(self.directory / f"chunk-{index:07d}.pkl", pickle.dumps(obj, protocol=5))

    def read_object(self, index: int) -> Any:
        """Load an object stored by :meth:`write_object`; ``None`` when damaged or unreadable (the
        caller recomputes it)."""
        import pickle

        path = self.directory / f"chunk-{index:07d}.pkl"
        try:
            return pickle.loads(path.read_bytes())
        except Exception:  # noqa: BLE001  (damaged, or written by an incompatible version: redo it)
            path.unlink(missing_ok=True)
            return None

    def write(self, index: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Store chunk ``index`` atomically."""
        import io as _io

        buf = _io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        self._atomic_write(self._chunk_path(index), buf.getvalue())

    def read(self, index: int) -> dict[str, np.ndarray]:
        """Load chunk ``index``."""
        try:
            with np.load(self._chunk_path(index), allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise DataFormatError(
                f"{self._chunk_path(index)} is damaged ({exc}): delete it and rerun to redo that chunk"
            ) from None

    def remove(self) -> None:
        """Delete the staging directory (after the final file is written) and release the lock."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.close()
