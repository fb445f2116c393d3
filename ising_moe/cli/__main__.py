"""``python -m ising_moe.cli``: the same as the ``isingmoe`` command."""

from . import main

main()
