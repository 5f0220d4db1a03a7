"""The Celery app a worker runs: ``celery -A integration_patterns.distributed.worker worker``.

``make worker`` starts one (see the Makefile). It consumes dagster-celery's ``dagster`` queue
on ``DAGSTER_CELERY_BROKER_URL`` with the same settings the runs use, and executes each step it
receives with dagster-celery's own task: the step loads its job from the code location, its
inputs from S3 and reports its events to the Dagster instance named by the run.
"""

from dagster._core.execution.retries import RetryMode
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from integration_patterns.distributed.celery_executor import make_executor

app = make_app(make_executor(RetryMode.DISABLED).app_args())
execute_plan = create_task(app)
