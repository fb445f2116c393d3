"""Read ``torch.save`` archives without importing torch, and without running pickled code.

``torch.save`` (PyTorch >= 1.6) writes a zip archive ``<name>/data.pkl``, ``<name>/byteorder`` and
one raw little-endian buffer per storage, ``<name>/data/<key>``. ``data.pkl`` is a protocol-2
pickle whose tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
calls and whose storages are persistent ids ``("storage", torch.<Type>Storage, key, location,
numel)``. (Layout read from the opcodes of a ``torch.save`` file written by torch 2.13.)

This reader resolves only those globals, plus ``collections.OrderedDict``; anything else in the
pickle (arbitrary classes, functions) is refused, so a hostile file cannot execute code. Tensors
come back as NumPy arrays (copies; bounds are checked before striding).
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataFormatError

__all__ = ["load_torch_zip"]

_STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "LongStorage": "i8",
    "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    if not isinstance(storage, np.ndarray):
        raise DataFormatError("tensor without a storage")
    try:
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError):
        raise DataFormatError("malformed tensor header (size/stride)") from None
    if len(size) != len(stride) or min(size, default=1) < 0 or min(stride, default=0) < 0 or offset < 0:
        raise DataFormatError(f"malformed tensor header: size {size}, stride {stride}, offset {offset}")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise DataFormatError(f"tensor of size {size} reaches past its storage ({storage.size} elements)")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * storage.itemsize for s in stride), writeable=False)
    return view.copy()


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str, where: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.byteorder, self.where = archive, prefix, byteorder, where

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise DataFormatError(
            f"{self.where}: holds a pickled {module}.{name}, which this reader does not load "
            "(only tensors, lists, dicts and numbers)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise DataFormatError(f"{self.where}: unsupported storage reference {pid!r:.80}")
        _, kind, key, _location, numel = pid
        dtype = np.dtype(_STORAGE_DTYPES[kind.name]).newbyteorder("<" if self.byteorder == "little" else ">")
        try:
            raw = self.archive.read(f"{self.prefix}data/{key}")
        except KeyError:
            raise DataFormatError(f"{self.where}: storage {key} is missing from the archive") from None
        if len(raw) != int(numel) * dtype.itemsize:
            raise DataFormatError(f"{self.where}: storage {key} has {len(raw)} bytes, expected "
                                  f"{numel} x {dtype.itemsize}")
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def load_torch_zip(path) -> object:
    """Unpickle a ``torch.save`` zip archive into Python containers and NumPy arrays.

    Raises
    ------
    DataFormatError
        Not a zip archive (e.g. the pre-1.6 legacy format, or a truncated file), no ``data.pkl``,
        a pickled object other than tensors and plain containers, or inconsistent storages.
    """
    path = Path(path)
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataFormatError(
            f"{where}: not a torch.save zip archive ({exc}); it may be truncated, or written by "
            "torch < 1.6 (re-save it with a current torch)") from None
    with archive:
        pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise DataFormatError(f"{where}: a torch.save archive has exactly one data.pkl, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        try:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        except KeyError:
            byteorder = "little"
        except (UnicodeDecodeError, zipfile.BadZipFile) as exc:
            raise DataFormatError(f"{where}: unreadable byteorder record ({exc})") from None
        if byteorder not in ("little", "big"):
            raise DataFormatError(f"{where}: unknown byte order {byteorder!r}")
        try:
            return _Unpickler(archive.read(pickles[0]), archive, prefix, byteorder, where).load()
        except DataFormatError:
            raise
        except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError, KeyError,
                AttributeError, IndexError, OverflowError) as exc:
            raise DataFormatError(f"{where}: corrupt torch.save archive ({type(exc).__name__}: {exc})") from None
