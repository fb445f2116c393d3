"""The layer x position lattice fitted to shipped organisms: the numbers of ``docs/lattice.md``.

For every model alias, :func:`ising_moe.fit.lattice.analysis.analyze_lattice` (method ``auto``:
adjacent pairs by pseudo-likelihood scored by the exact held-out likelihood, the whole lattice by
Monte Carlo learning from its pseudo-likelihood fit) on the first ``--sequences`` sequences of
its shipped file (default: all), with the given number of token rows. Prints one JSON object per
model (its ``summary()`` plus the data's provenance and the arguments) and writes the lattice
figure into ``--figures`` when given.

    python scripts/lattice_organisms.py olmoe-tiny olmoe-tiny-mem [--sequences 300] [--token-rows 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import ising_moe
from ising_moe.data import load_experts
from ising_moe.extract.registry import find_data_file
from ising_moe.fit.lattice.analysis import analyze_lattice, lattice_figure

SEQUENCE_FIELDS = ("experts", "mask", "dropped", "token_ids", "document_ids", "router_probs", "router_entropy")


def first_sequences(data, n: int | None):
    """The first ``n`` sequences of an :class:`~ising_moe.data.ExpertSequences` (all for ``None``)."""
    if n is None or n >= data.n_sequences:
        return data
    return dataclasses.replace(data, **{f: getattr(data, f)[:n] for f in SEQUENCE_FIELDS
                                        if getattr(data, f) is not None})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--sequences", type=int, default=None)
    ap.add_argument("--token-rows", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figures", type=Path, default=None)
    args = ap.parse_args(argv)
    for alias in args.models:
        path = find_data_file(alias)
        if path is None:
            print(f"no shipped data file for {alias!r}", file=sys.stderr)
            return 2
        data = first_sequences(load_experts(path), args.sequences)
        report = analyze_lattice(data, token_rows=args.token_rows, seed=args.seed, progress=True)
        if args.figures is not None:
            out = args.figures / alias
            out.mkdir(parents=True, exist_ok=True)
            lattice_figure(report, out)
        print("\n".join(report.lines()), file=sys.stderr)
        print(json.dumps({"model": alias, "file": str(path), "weights": data.weights,
                          "n_sequences": data.n_sequences, "args": vars(args) | {"figures": str(args.figures)},
                          "package_version": ising_moe.__version__, "lattice": report.summary()},
                         default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
