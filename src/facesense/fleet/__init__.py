"""Running cameras on a fleet of machines that share one PostgreSQL database.

- :mod:`facesense.fleet.listen`: a LISTEN thread on its own connection
  (:class:`~facesense.fleet.listen.ChangeListener`), reconnecting when the database goes
  away; PostgreSQL galleries use it for ``watch_changes``.
- :mod:`facesense.fleet.leases`: cameras claimed through leases in the database, with
  fencing tokens and heartbeats (:class:`~facesense.fleet.leases.LeaseTable`).
- :mod:`facesense.fleet.worker`: the loop of ``facesense worker``, which claims cameras
  and runs a :class:`~facesense.pipeline.Pipeline` for each one it holds.

Nothing here is imported by ``import facesense``; psycopg is imported only by the
modules that talk to the database.
"""

from __future__ import annotations

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__: list[str] = []
