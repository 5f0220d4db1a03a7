"""The code location's entry point: everything under ``defs/`` is loaded by convention."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Load every definition in the defs folder (one folder per integration pattern)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
