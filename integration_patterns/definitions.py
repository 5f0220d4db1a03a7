"""The code location's entry point: everything under ``defs/`` is loaded by convention.

Every run worker, step process and code server imports this module first, so what it
costs, every run pays. ``dg.load_from_defs_folder`` builds the project's root component,
which adds a JSON snapshot of every installed component library (it imports each one:
``dagster_aws.components`` alone takes about 2.3 s here) for the UI's component catalogue.
This location declares no components, so it builds the same component tree from its
``defs`` package and loads only that: the same modules by the same rules (``dg check defs``,
``dg list defs`` and ``dg dev`` read it unchanged), without the catalogue. Building the tree
from the module rather than from ``pyproject.toml`` also works where the package is
installed without its project files (a wheel in an image).

Building the tree calls Dagster's own ``load_definitions_from_module``, which warns that it
is a preview; ``dg.load_from_defs_folder`` silences that warning for its callers, and so
does this loader (only that one message: any other preview or beta warning still shows).
"""

import warnings
from pathlib import Path

import dagster as dg

import integration_patterns.defs


@dg.definitions
def defs() -> dg.Definitions:
    """Load every definition in the defs folder (one folder per integration pattern)."""
    tree = dg.ComponentTree.from_module(
        defs_module=integration_patterns.defs, project_root=Path(__file__).parent.parent
    )
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*load_definitions_from_module", category=dg.PreviewWarning
        )
        return tree.build_defs(tree.defs_module_path)
