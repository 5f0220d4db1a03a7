"""One declaration per resource of which environment variable feeds which field.

Configuration reaches a resource by two routes, and both read the same table, the
resource's ``env_vars`` (field name to variable name):

- ``Resource.from_env_vars()``: the Dagster wiring (``defs/resources.py``). Every field is a
  ``dg.EnvVar``, resolved when a run starts, so secrets never enter code, run config or the
  UI (which shows the variable's name, not its value).
- ``Resource.from_env(env=None, **overrides)``: code that runs outside Dagster (the ASGI
  services, development tooling, benchmarks, tests) and reads the environment itself.

For the same environment both give the same resource: a set variable is taken as it is (an
empty string included, as Dagster does), an ``int`` field is parsed as an integer. An unset
variable keeps the field's default in ``from_env``, where Dagster's wiring fails the run
naming the variable.
"""

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import dagster as dg


class EnvConfigured:
    """Mixin for a configurable resource whose fields come from environment variables.

    Example:
        ```python
        class PostgresResource(EnvConfigured, dg.ConfigurableResource):
            env_vars: ClassVar[Mapping[str, str]] = {"host": "POSTGRES_HOST"}
            host: str = "127.0.0.1"

        wired = PostgresResource.from_env_vars()  # host=dg.EnvVar("POSTGRES_HOST")
        local = PostgresResource.from_env({"POSTGRES_HOST": "db"}, port=5433)
        ```
    """

    env_vars: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def _is_int(cls, field: str) -> bool:
        return cls.model_fields[field].annotation is int  # pyright: ignore[reportAttributeAccessIssue]

    @classmethod
    def env_wiring(cls) -> dict[str, Any]:
        """Each mapped field as a ``dg.EnvVar`` (``dg.EnvVar.int`` for ``int`` fields)."""
        return {
            field: dg.EnvVar.int(var) if cls._is_int(field) else dg.EnvVar(var)
            for field, var in cls.env_vars.items()
        }

    @classmethod
    def from_env_vars(cls, **overrides: Any) -> Self:
        """The resource for Dagster's wiring: the mapped fields read when a run starts."""
        return cls(**(cls.env_wiring() | overrides))

    @classmethod
    def env_values(cls, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The mapped fields whose variable is set in ``env`` (default: the process's)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field, var in cls.env_vars.items():
            if var not in env:
                continue
            if cls._is_int(field):
                try:
                    values[field] = int(env[var])
                except ValueError:
                    raise ValueError(f"{var} must be an integer, got {env[var]!r}") from None
            else:
                values[field] = env[var]
        return values

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """The resource configured from ``env`` (default: the process's), with overrides."""
        return cls(**(cls.env_values(env) | overrides))
