"""`python -m evotune ...` runs the CLI."""

from __future__ import annotations

from evotune.cli import main

main()
