"""``python -m facesense.cli``: the ``facesense`` command without its console script."""

from facesense.cli import main

main(prog_name="facesense")
