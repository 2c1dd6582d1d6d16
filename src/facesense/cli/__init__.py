"""The ``facesense`` command: a thin adapter over the library.

Data goes to stdout (JSON Lines with ``--json``), logs and progress to stderr. Exit
codes come from the exception class (:attr:`facesense.errors.FacesenseError.exit_code`).
"""

from __future__ import annotations

import click

from facesense.cli._common import FacesenseGroup, setup_logging


@click.group(cls=FacesenseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(package_name="facesense")
def main(verbose: int, quiet: bool) -> None:
    """facesense: real-time face detection and recognition on a plain CPU."""
    setup_logging(verbose=verbose, quiet=quiet)


def _register() -> None:
    # Each command group lives in its own module; imports are cheap (no models).
    from facesense.cli.bench import bench
    from facesense.cli.correct import correct
    from facesense.cli.detect import detect, embed
    from facesense.cli.eval import eval_group
    from facesense.cli.gallery import enroll, gallery_group, people, recognize, reembed
    from facesense.cli.serve import serve
    from facesense.cli.unknowns import unknowns
    from facesense.cli.watch import watch
    from facesense.cli.worker import worker

    main.add_command(bench)
    main.add_command(correct)
    main.add_command(detect)
    main.add_command(embed)
    main.add_command(eval_group)
    main.add_command(enroll)
    main.add_command(gallery_group)
    main.add_command(people)
    main.add_command(recognize)
    main.add_command(reembed)
    main.add_command(serve)
    main.add_command(unknowns)
    main.add_command(watch)
    main.add_command(worker)


_register()

__all__ = ["main"]
