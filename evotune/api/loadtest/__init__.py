"""Load benchmark of the REST service (`python -m evotune.api.loadtest --help`)."""

from __future__ import annotations

from evotune.api.loadtest.run import LoadResult, db_routes, main, run_load
from evotune.api.loadtest.writer import seed_database, writer_loop

__all__ = ["LoadResult", "db_routes", "main", "run_load", "seed_database", "writer_loop"]
