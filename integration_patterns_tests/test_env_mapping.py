"""Every resource has one environment mapping, read by Dagster's wiring and ``from_env`` alike.

The code location wires its resources with ``dg.EnvVar`` (secrets stay variable names in the
UI); code outside Dagster calls ``Resource.from_env()``. Both read the resource's
``env_vars``, so for one environment they must build the same resource: these tests resolve
the loaded definitions' resources the way a run does and compare them with ``from_env``.
"""

import os

import pytest
from dagster._config.post_process import post_process_config
from hypothesis import given
from hypothesis import strategies as st

from devstack.environment import env_defaults
from integration_patterns.definitions import defs
from integration_patterns.defs.external_api.resources import PartnerApiResource
from integration_patterns.resources.env import EnvConfigured
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.rabbitmq import RabbitMQResource
from integration_patterns.resources.s3 import S3ParquetIOManager, S3StorageResource

# resource key in the code location -> its class
WIRED = {
    "postgres": PostgresResource,
    "mongo": MongoResource,
    "kafka": KafkaResource,
    "rabbitmq": RabbitMQResource,
    "s3": S3StorageResource,
    "io_manager": S3ParquetIOManager,
    "partner_api": PartnerApiResource,
}


def _resolved(resource) -> dict:
    """The resource's config as a run resolves it: EnvVars read, defaults filled.

    Dagster's own step (``process_config_and_initialize`` without the set-up that would
    connect), so both sides go through the same validation.
    """
    processed = post_process_config(
        resource._config_schema.config_type,  # noqa: SLF001
        resource._convert_to_config_dictionary(),  # noqa: SLF001
    )
    assert processed.success, processed.errors
    return processed.value


@pytest.fixture
def distinct_env(monkeypatch, unique):
    """Every mapped variable set to a value unlike the field's default (a wiring gap shows)."""
    for cls in WIRED.values():
        for field, var in cls.env_vars.items():
            number = cls.model_fields[field].annotation is int
            monkeypatch.setenv(var, str(4000 + len(var)) if number else f"{field}-{unique}")
    return dict(os.environ)


@pytest.mark.parametrize("key", sorted(WIRED))
def test_from_env_equals_the_resource_dagster_resolves(key, distinct_env):
    wired = defs().resources[key]
    assert type(wired) is WIRED[key]
    assert _resolved(wired) == _resolved(WIRED[key].from_env(distinct_env))


@pytest.mark.parametrize("key", sorted(WIRED))
def test_every_mapped_field_is_an_env_var_in_the_wiring(key):
    wired = defs().resources[key]
    cls = WIRED[key]
    assert issubclass(cls, EnvConfigured) and cls.env_vars
    config = wired._convert_to_config_dictionary()  # noqa: SLF001
    for field, var in cls.env_vars.items():
        assert config[field] == {"env": var}, (key, field)  # never the value itself


@pytest.mark.parametrize("key", sorted(WIRED))
def test_secrets_in_the_wiring_are_variable_names_never_values(key):
    # A secret field (hidden from repr) is either left at its empty default or an EnvVar,
    # also inside a nested resource (the IO manager's S3 client).
    wired = defs().resources[key]
    config = wired._convert_to_config_dictionary()  # noqa: SLF001
    resources = [(type(wired), config)]
    if key == "io_manager":
        resources.append((S3StorageResource, config["s3_resource"]))
    checked = 0
    for cls, values in resources:
        for name, field in cls.model_fields.items():
            if field.repr is False and values.get(name) not in ("", None):
                assert values[name] == {"env": cls.env_vars.get(name)}, (key, name)
                checked += 1
    assert checked  # every resource here is given a secret (the IO manager: its S3 key)


def test_from_env_keeps_defaults_for_unset_variables_and_applies_overrides():
    postgres = PostgresResource.from_env({"POSTGRES_HOST": "db.internal"}, max_size=9)
    assert (postgres.host, postgres.port, postgres.max_size) == ("db.internal", 5432, 9)
    assert PostgresResource.from_env({"POSTGRES_SSLROOTCERT": ""}).sslrootcert == ""


def test_from_env_names_the_variable_of_a_bad_integer():
    with pytest.raises(ValueError, match="POSTGRES_PORT must be an integer, got 'x'"):
        PostgresResource.from_env({"POSTGRES_PORT": "x"})


@given(st.text(max_size=12))
def test_an_integer_variable_parses_or_fails_naming_itself(value):
    # Outside input: whatever the variable holds, an int field gets int(value) or a clear error.
    try:
        expected = int(value)
    except ValueError:
        with pytest.raises(ValueError, match="POSTGRES_POOL_MAX_SIZE must be an integer"):
            PostgresResource.from_env({"POSTGRES_POOL_MAX_SIZE": value})
    else:
        assert PostgresResource.from_env({"POSTGRES_POOL_MAX_SIZE": value}).max_size == expected


@given(st.text(max_size=40))
def test_a_string_variable_is_taken_verbatim(value):
    assert KafkaResource.from_env({"KAFKA_SASL_PASSWORD": value}).sasl_password == value


def test_env_files_layer_like_make(tmp_path):
    (tmp_path / ".env.example").write_text("A=example\nB=example\nC=example\n")
    (tmp_path / ".env").write_text("B=dotenv\nC=dotenv\nQ='[\"x,y\"]'\nD=$A\n")
    env = env_defaults({"C": "process"}, project=tmp_path)
    assert env == {"A": "example", "B": "dotenv", "C": "process", "Q": '["x,y"]', "D": "$A"}


def test_env_files_work_without_a_dotenv(tmp_path):
    (tmp_path / ".env.example").write_text("# comment\nexport A=1\n")
    assert env_defaults({}, project=tmp_path) == {"A": "1"}
