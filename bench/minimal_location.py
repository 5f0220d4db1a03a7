"""The smallest code location there is: one asset and a one-step job, nothing imported.

``bench/run_latency.py`` compares this location with ours: what a location costs to load
and how long a trivial run takes from launch to success are Dagster's own floor on this
machine, so ours is measured against it rather than against an absolute number. Its job
runs in-process like ours, so the comparison is of the locations, not of the executors.
"""

import dagster as dg

LOCATION = "minimal"
JOB = "trivial"


@dg.asset
def ping() -> dg.MaterializeResult:
    """Answers at once."""
    return dg.MaterializeResult(metadata={"pong": True})


trivial = dg.define_asset_job(JOB, selection=[ping], executor_def=dg.in_process_executor)


@dg.definitions
def defs() -> dg.Definitions:
    """The one asset and its job."""
    return dg.Definitions(assets=[ping], jobs=[trivial])
