"""``python -m ising_moe.extract ARGS`` = ``isingmoe extract ARGS`` (the entry point for ``torchrun``)::

    torchrun --nproc-per-node 4 -m ising_moe.extract --model olmoe --corpus corpus.jsonl -o data/olmoe.h5
"""

import sys

from ..cli import main

if __name__ == "__main__":
    main(["extract", *sys.argv[1:]], prog_name="isingmoe")
