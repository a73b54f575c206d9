"""``python -m stream.cli``: the ``pulse`` command line."""

from stream.cli import main

main()
