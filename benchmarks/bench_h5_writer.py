"""Cost of writing HDF5 through ising-moe's guarded file object (``io.atomic_h5``) against plain h5py.

``atomic_h5`` writes through a Python file object (h5py's ``fileobj`` driver) so that a full disk
never reaches HDF5 as a failed write (see ``io._GuardedFile``). This times the same compressed
datasets written both ways and prints JSON: ``ratio`` = guarded / plain (median of ``--repeats``).

    python benchmarks/bench_h5_writer.py --rows 2000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from ising_moe.io import atomic_h5, write_array


def _arrays(rows: int):
    rng = np.random.default_rng(0)
    return {"experts": rng.integers(0, 64, size=(rows, 8), dtype=np.uint8), "values": rng.random(rows)}


def _plain(path: Path, arrays) -> None:
    with h5py.File(path, "w", track_order=True) as f:
        for name, data in arrays.items():
            write_array(f, name, data, ["row"] if data.ndim == 1 else ["row", "rank"])


def _guarded(path: Path, arrays) -> None:
    with atomic_h5(path, kind="bench", params={}, overwrite=True) as f:
        for name, data in arrays.items():
            write_array(f, name, data, ["row"] if data.ndim == 1 else ["row", "rank"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    arrays = _arrays(args.rows)
    times = {"plain": [], "guarded": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, write in (("plain", _plain), ("guarded", _guarded)):
                t0 = time.perf_counter()
                write(Path(tmp) / f"{name}.h5", arrays)
                times[name].append(time.perf_counter() - t0)
        sizes = {name: (Path(tmp) / f"{name}.h5").stat().st_size for name in times}
    plain, guarded = statistics.median(times["plain"]), statistics.median(times["guarded"])
    print(json.dumps({"rows": args.rows, "bytes": sizes, "plain_s": plain, "guarded_s": guarded,
                      "ratio": guarded / plain, "times": times}, indent=2))


if __name__ == "__main__":
    main()
