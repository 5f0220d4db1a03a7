"""A partition is stalled when the run of its next uncommitted range has failed for good.

Ranges of a partition commit in order, so while the range starting at the committed offset
is failed nothing after it can commit (later ranges are refused as "predecessor not
committed"). The sensor stops dispatching for such a partition and says which range and
run to look at; the operations monitor alerts on it. A run that is queued, running or
being retried (run retries and step retry policies) is not a stall.
"""

from dataclasses import dataclass

import dagster as dg

PARTITION_TAG = "kafka/topic_partition"
RANGE_TAG = "kafka/range"
# How many of a partition's most recent runs to search for the range's latest attempt.
RUN_LOOKBACK = 100


@dataclass(frozen=True)
class Stall:
    """The failed range that holds a partition back, and the run that failed it."""

    topic: str
    partition: int
    range: str
    run_id: str

    def describe(self) -> str:
        """One line for skip reasons, logs and alerts."""
        return (
            f"{self.topic}[{self.partition}] is stalled at range {self.range}: run "
            f"{self.run_id} failed; fix the cause and re-execute that run (later ranges wait)"
        )


def find_stall(
    instance: dg.DagsterInstance, topic: str, partition: int, position: int
) -> Stall | None:
    """The stall of ``partition`` whose next uncommitted offset is ``position``, if any.

    The newest run whose range starts at ``position`` decides: failed means stalled;
    queued, started or successful (the commit is on its way) means not.
    """
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={PARTITION_TAG: f"{topic}:{partition}"}), limit=RUN_LOOKBACK
    )
    for run in runs:  # newest first
        range_ = run.tags.get(RANGE_TAG, "")
        if range_.split("-")[0] != str(position):
            continue
        if run.status == dg.DagsterRunStatus.FAILURE:
            return Stall(topic, partition, range_, run.run_id)
        return None
    return None
