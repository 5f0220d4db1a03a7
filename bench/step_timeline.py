"""Where a run's time goes, per step, read back from its event log.

The distributed benchmark compares wall times; this says why they differ. Each step's time
is cut at the events Dagster already records: dagster-celery's submit and the worker's
pick-up (the ``celery_queue_wait`` markers), STEP_START, the last LOADED_INPUT, the first
STEP_OUTPUT, the last HANDLED_OUTPUT and STEP_SUCCESS. The run's own time is split into the
time some step was running and the idle time in between: before the first step, handoffs
from one level of the graph to the next (the orchestrator noticing a finished step, then the
broker and a worker starting the next), and after the last step.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

QUEUE_MARKER = "celery_queue_wait"  # dagster_celery.core_execution_loop.DELEGATE_MARKER
ET = dg.DagsterEventType


@dataclass
class _Step:
    submitted: float | None = None
    picked_up: float | None = None
    started: float | None = None
    inputs_loaded: float | None = None
    first_output: float | None = None
    outputs_handled: float | None = None
    succeeded: float | None = None


def _steps(records: Sequence[Any]) -> dict[str, _Step]:
    steps: dict[str, _Step] = {}
    for record in records:
        event = record.dagster_event
        if event is None or not record.step_key:
            continue
        step = steps.setdefault(record.step_key, _Step())
        at = record.timestamp
        kind = event.event_type
        if kind == ET.ENGINE_EVENT:
            data = event.engine_event_data
            if data.marker_start == QUEUE_MARKER:
                step.submitted = at
            elif data.marker_end == QUEUE_MARKER:
                step.picked_up = at
        elif kind == ET.STEP_START:
            step.started = at
        elif kind == ET.LOADED_INPUT:
            step.inputs_loaded = at
        elif kind == ET.STEP_OUTPUT and step.first_output is None:
            step.first_output = at
        elif kind == ET.HANDLED_OUTPUT:
            step.outputs_handled = at
        elif kind == ET.STEP_SUCCESS:
            step.succeeded = at
    return {key: step for key, step in steps.items() if step.started and step.succeeded}


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 3)


def _phases(step: _Step) -> dict[str, float | None]:
    after_inputs = step.inputs_loaded or step.started
    before_finish = step.outputs_handled or step.first_output or step.succeeded
    return {
        "queued": _span(step.submitted, step.picked_up),  # broker + worker loads the plan
        "setup": _span(step.picked_up, step.started),  # resources, log capture
        "inputs": _span(step.started, step.inputs_loaded),  # IO manager loads
        "compute": _span(after_inputs, step.first_output or step.succeeded),
        "outputs": _span(step.first_output, step.outputs_handled),  # IO manager stores
        "finish": _span(before_finish, step.succeeded),
        "total": _span(step.submitted or step.started, step.succeeded),
    }


def breakdown(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """Per-step phases and the run's idle time (seconds), from the run's event log."""
    records = instance.all_logs(run_id)
    steps = _steps(records)
    first = records[0].timestamp
    run_end = next(
        (
            r.timestamp
            for r in records
            if r.dagster_event and r.dagster_event.event_type == ET.RUN_SUCCESS
        ),
        records[-1].timestamp,
    )
    # Merge the steps' running intervals; what is left between them is idle.
    intervals = sorted((s.started, s.succeeded) for s in steps.values())
    busy, idle_gaps, cursor = 0.0, [], first
    for start, end in intervals:
        assert start is not None and end is not None
        if start > cursor:
            idle_gaps.append(start - cursor)
        busy += max(0.0, end - max(start, cursor))
        cursor = max(cursor, end)
    before = idle_gaps[0] if idle_gaps else 0.0
    handoffs = idle_gaps[1:]
    return {
        "run_s": round(run_end - first, 3),
        "steps_running_s": round(busy, 3),
        "idle_before_first_step_s": round(before, 3),
        "idle_handoffs_s": [round(g, 3) for g in handoffs],
        "idle_after_last_step_s": round(run_end - cursor, 3),
        "steps": {key: _phases(step) for key, step in sorted(steps.items())},
    }
