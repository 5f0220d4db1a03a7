"""A secret given through the environment appears nowhere a user or log reader can see it.

The PostgreSQL password is set to a fresh random value for a throw-away role, a real run
uses it to connect, and then everything the run left behind is searched for it.
"""

import secrets

import dagster as dg
import pytest

from integration_patterns.definitions import defs


@pytest.fixture
def secret_role(postgres, unique, monkeypatch):
    password = f"s3cret-{secrets.token_hex(12)}"
    role = f"secret_probe_{unique}"
    with postgres.get_connection() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    monkeypatch.setenv("POSTGRES_USER", role)
    monkeypatch.setenv("POSTGRES_PASSWORD", password)
    yield password
    with postgres.get_connection() as conn:
        conn.execute(f"DROP ROLE {role}")


def test_secret_absent_from_logs_run_config_metadata_and_repr(secret_role, capfd):
    password = secret_role
    loaded = defs()
    with dg.instance_for_test() as instance:
        result = loaded.resolve_job_def("platform_smoke").execute_in_process(instance=instance)
        assert result.success  # the password really was used to connect
        run = instance.get_run_by_id(result.run_id)
        records = instance.all_logs(result.run_id)
    assert run is not None
    assert password not in repr(run.run_config)
    for record in records:
        assert password not in record.message
        assert password not in repr(record.dagster_event)
    for event in result.get_asset_materialization_events():
        assert password not in repr(event.step_materialization_data.materialization.metadata)
    # The wired resource holds only an EnvVar; the one a run uses holds the resolved value.
    with dg.build_resources({"postgres": loaded.resources["postgres"]}) as resources:
        resolved = resources.postgres
        assert resolved.password == password  # the secret really is in this object...
        assert password not in repr(resolved) and password not in str(resolved)  # ...unshown
    out, err = capfd.readouterr()
    assert password not in out + err
