"""The deployment artifacts in deploy/, tested as far as a machine without containers allows.

No container engine or Kubernetes cluster exists here, so: the production instance config is
validated by Dagster's own config schema (the instance's and each configured class's, the
Kubernetes run launcher and the S3 compute log manager included), its compute log manager
writes to the real S3 server, the Helm values agree with it, and the Dockerfile's build steps
(``deploy/build.sh``, which the Dockerfile runs) build a working code location in a clean
directory with its own virtual environment.
"""

import importlib
import os
import shutil
import subprocess

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.compute_log_manager import ComputeIOType

from integration_patterns_tests.conftest import PROJECT

DEPLOY = PROJECT / "deploy"


@pytest.fixture
def production_env(monkeypatch):
    """The variables the production config reads, as a Kubernetes ConfigMap would set them."""
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", "integration-patterns")


def _configured_class(section: dict):
    module = importlib.import_module(section["module"])
    return getattr(module, section["class"])


def test_production_instance_config_passes_dagsters_schema(production_env):
    config, _ = dagster_instance_config(str(DEPLOY))
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    for name in ("run_launcher", "compute_logs"):
        section = config[name]
        klass = _configured_class(section)
        result = process_config(klass.config_type(), section.get("config") or {})
        assert result.success, (name, [e.message for e in result.errors or []])


def test_a_broken_production_config_is_refused(tmp_path, production_env):
    broken = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    broken["run_launcher"]["config"]["fail_pod_on_run_failure"] = "sometimes"
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(broken))
    config, _ = dagster_instance_config(str(tmp_path))
    klass = _configured_class(config["run_launcher"])
    assert not process_config(klass.config_type(), config["run_launcher"]["config"]).success


def test_compute_logs_go_to_the_real_s3_server(tmp_path, production_env, unique, monkeypatch):
    """The production compute log manager, built from deploy/dagster.yaml, against versitygw."""
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["compute_logs"]
    config["config"]["prefix"] = f"tests/{unique}/compute-logs"
    config["config"]["local_dir"] = str(tmp_path / "logs")
    klass = _configured_class(config)
    processed = process_config(klass.config_type(), config["config"])
    assert processed.success
    manager = klass(**processed.value)
    log_key = ["run", "step"]
    with manager.open_log_stream(log_key, ComputeIOType.STDOUT) as stream:
        stream.write("hello from a step\n")  # type: ignore[union-attr]
    client = manager._s3_session  # noqa: SLF001 (the manager's own client: same endpoint, keys)
    listing = client.list_objects_v2(Bucket=os.environ["S3_BUCKET"], Prefix=f"tests/{unique}/")
    keys = [item["Key"] for item in listing.get("Contents", [])]
    assert any(key.endswith(".out") for key in keys), keys
    for key in keys:
        client.delete_object(Bucket=os.environ["S3_BUCKET"], Key=key)


def test_helm_values_match_the_production_instance():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == instance["run_launcher"]["class"]
    assert values["computeLogManager"]["type"] == instance["compute_logs"]["class"]
    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = instance["concurrency"]["runs"]
    assert queued["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert daemon["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
    assert daemon["runMonitoring"]["enabled"] == instance["run_monitoring"]["enabled"]
    grpc_args = values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"]
    assert grpc_args == ["--module-name", "integration_patterns.definitions"]


def test_image_build_steps_make_a_working_code_location(tmp_path):
    """deploy/build.sh (the Dockerfile's RUN step) in a clean directory and environment."""
    app = tmp_path / "app"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT"))}
    env["UV_COMPILE_BYTECODE"] = "0"  # the image compiles; here it would only cost a minute
    build = subprocess.run(
        ["bash", str(DEPLOY / "build.sh"), str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    python = app / ".venv" / "bin" / "python"
    assert python.exists()
    # Runtime dependencies only: the image carries no test tools.
    check = subprocess.run([python, "-c", "import pytest"], capture_output=True, env=env)
    assert check.returncode != 0
    # The Dockerfile's command exists in the image's environment.
    assert (app / ".venv" / "bin" / "dagster").exists()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "RUN ./deploy/build.sh /opt/dagster/app" in dockerfile
    shutil.rmtree(app / ".venv")
