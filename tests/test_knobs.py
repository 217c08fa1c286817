"""The table of pool knobs, walked knob by knob: filled, read back, reported and checked.

Each test is parametrized over ``KNOBS`` itself, so a knob added to the table is
tested for every use without a new test. "Really runs with" is read off pools
and connections that django-redis builds through the alias's own factory.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from django_connhealth import sized_caches
from django_connhealth.adapters.django_redis import adapter, pool_config
from django_connhealth.checks import check_redis_pools
from django_connhealth.knobs import FILLED, KNOBS, POOL_SHAPING_OPTIONS, Knob
from django_connhealth.redispy import connection_defaults

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis import ConnectionPool

    from tests.conftest import RedisDB

BACKEND = "django_redis.cache.RedisCache"
LOCATION = "redis://127.0.0.1:1/0"  # nothing listens: building pools connects nowhere
ENVIRON = {"CONNHEALTH_THREADS": "3", "CONNHEALTH_HOST": "knobs"}
#: A value of each knob that no default or derivation gives.
USER_VALUE: dict[str, Any] = {
    "max_connections": 11,
    "timeout": 7.5,
    "socket_timeout": 2.25,
    "socket_connect_timeout": 0.75,
    "health_check_interval": 17,
}
OPTION_KNOBS = [knob for knob in KNOBS if knob.option]


def ids(knob: Knob) -> str:
    return knob.kwarg


def option_key(knob: Knob) -> str:
    assert knob.option is not None
    return knob.option


def alias_config(location: str | list[str] = LOCATION, **options: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"BACKEND": BACKEND, "LOCATION": location}
    if options:
        config["OPTIONS"] = options
    return config


def built_pool(config: Mapping[str, Any]) -> ConnectionPool:
    """The pool django-redis builds for the alias, through the alias's own factory."""
    [live] = adapter.alias_pools("default", config)
    return live.pool


def runs_with(pool: ConnectionPool, knob: Knob) -> Any:
    """What ``pool`` (or a connection it makes; none is opened) really uses for ``knob``."""
    if knob.kwarg in ("max_connections", "timeout"):
        return getattr(pool, knob.kwarg)
    connection = pool.make_connection()
    try:
        return getattr(connection, knob.kwarg)
    finally:
        connection.disconnect()


def expected_default(knob: Knob) -> Any:
    return 3 + 2 if knob.default is None else knob.default  # threads + headroom


def test_every_pool_keyword_is_in_the_table() -> None:
    """The table and the tools that read it agree on the set of knobs."""
    assert [knob.kwarg for knob in KNOBS] == list(USER_VALUE)
    assert [knob.kwarg for knob in FILLED] == [k for k in USER_VALUE if k != "max_connections"]
    assert {"SOCKET_TIMEOUT", "SOCKET_CONNECT_TIMEOUT"} <= set(POOL_SHAPING_OPTIONS)
    assert set(connection_defaults()) == {k.kwarg for k in KNOBS} - {"max_connections", "timeout"}


@pytest.mark.parametrize("knob", KNOBS, ids=ids)
def test_unset_knob_is_filled_read_back_and_really_used(knob: Knob) -> None:
    config = sized_caches({"default": alias_config()}, environ=ENVIRON)["default"]
    options = config["OPTIONS"]
    expected = expected_default(knob)
    source = "derived" if knob.default is None else "default"
    assert options["CONNECTION_POOL_KWARGS"][knob.kwarg] == expected
    assert options["CONNHEALTH"]["sources"][knob.kwarg] == source
    read = pool_config(options, LOCATION)
    assert (read.values[knob.kwarg], read.sources[knob.kwarg]) == (expected, source)
    assert runs_with(built_pool(config), knob) == expected


@pytest.mark.parametrize("knob", KNOBS, ids=ids)
def test_keyword_the_user_set_wins(knob: Knob) -> None:
    value = USER_VALUE[knob.kwarg]
    user = alias_config(CONNECTION_POOL_KWARGS={knob.kwarg: value})
    config = sized_caches({"default": user}, environ=ENVIRON)["default"]
    options = config["OPTIONS"]
    assert options["CONNECTION_POOL_KWARGS"][knob.kwarg] == value
    assert options["CONNHEALTH"]["sources"][knob.kwarg] == "OPTIONS"
    read = pool_config(options, LOCATION)
    assert (read.values[knob.kwarg], read.sources[knob.kwarg]) == (value, "OPTIONS")
    assert runs_with(built_pool(config), knob) == value


@pytest.mark.parametrize("knob", KNOBS, ids=ids)
def test_url_query_wins_over_everything(knob: Knob) -> None:
    value = USER_VALUE[knob.kwarg]
    location = f"{LOCATION}?{knob.kwarg}={value}"
    user = alias_config(location, CONNECTION_POOL_KWARGS={knob.kwarg: expected_default(knob)})
    config = sized_caches({"default": user}, environ=ENVIRON)["default"]
    read = pool_config(config["OPTIONS"], location)
    assert (read.values[knob.kwarg], read.sources[knob.kwarg]) == (value, "LOCATION")
    assert runs_with(built_pool(config), knob) == value


@pytest.mark.parametrize("knob", OPTION_KNOBS, ids=ids)
def test_true_option_key_counts_as_set(knob: Knob) -> None:
    value = USER_VALUE[knob.kwarg]
    config = sized_caches({"default": alias_config(**{option_key(knob): value})}, environ=ENVIRON)
    options = config["default"]["OPTIONS"]
    assert knob.kwarg not in options["CONNECTION_POOL_KWARGS"]
    assert options["CONNHEALTH"]["sources"][knob.kwarg] == "OPTIONS"
    read = pool_config(options, LOCATION)
    assert (read.values[knob.kwarg], read.sources[knob.kwarg]) == (value, "OPTIONS")
    assert runs_with(built_pool(config["default"]), knob) == value
    with override_settings(CACHES=config):
        assert [m.id for m in check_redis_pools()] == []


@pytest.mark.parametrize("false_value", [0, 0.0, None])
@pytest.mark.parametrize("knob", OPTION_KNOBS, ids=ids)
def test_false_option_key_sized_gets_the_default_and_a_warning(
    knob: Knob, false_value: Any
) -> None:
    """``OPTIONS["SOCKET_TIMEOUT"] = 0``: django-redis ignores it, so sizing fills the default."""
    config = sized_caches(
        {"default": alias_config(**{option_key(knob): false_value})}, environ=ENVIRON
    )
    options = config["default"]["OPTIONS"]
    assert options["CONNECTION_POOL_KWARGS"][knob.kwarg] == knob.default
    assert options["CONNHEALTH"]["sources"][knob.kwarg] == "default"
    read = pool_config(options, LOCATION)
    assert (read.values[knob.kwarg], read.sources[knob.kwarg]) == (knob.default, "default")
    assert runs_with(built_pool(config["default"]), knob) == knob.default
    with override_settings(CACHES=config):
        messages = check_redis_pools()
    assert [m.id for m in messages] == ["connhealth.W010"]
    assert messages[0].msg == (
        f"CACHES['default'] has OPTIONS[{knob.option!r}]={false_value!r} "
        f"(ignored: django-redis skips a false value), so its pools run with "
        f"{knob.kwarg}={knob.default!r} (default)."
    )


@pytest.mark.parametrize("knob", OPTION_KNOBS, ids=ids)
def test_false_option_key_unsized_reports_what_redis_py_uses(knob: Knob) -> None:
    """Unsized, the pool runs on redis-py's own default: reported as such, and W010 fires."""
    options: dict[str, Any] = {
        option_key(knob): 0,
        "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
        "CONNECTION_POOL_KWARGS": {"max_connections": 5},
    }
    user = alias_config(**options)
    read = pool_config(options, LOCATION)
    really = runs_with(built_pool(user), knob)
    assert read.values[knob.kwarg] == really
    assert read.sources[knob.kwarg] == "redis-py"
    with override_settings(CACHES={"default": user}):
        ids_fired = [m.id for m in check_redis_pools()]
    assert "connhealth.W010" in ids_fired
    # No timeout at all (redis-py < 8) is what W005/W006 are for.
    assert (knob.check_when_unset in ids_fired) is (not really)


@pytest.mark.parametrize("knob", [k for k in KNOBS if k.check_when_unset], ids=ids)
def test_knob_without_a_value_fires_its_check(knob: Knob) -> None:
    user = alias_config(
        CONNECTION_POOL_CLASS="redis.BlockingConnectionPool",
        CONNECTION_POOL_KWARGS={"max_connections": 5, knob.kwarg: None},
    )
    if knob.kwarg == "socket_connect_timeout":  # redis-py falls back to the socket timeout
        user["OPTIONS"]["CONNECTION_POOL_KWARGS"]["socket_timeout"] = None
    assert runs_with(built_pool(user), knob) is None
    with override_settings(CACHES={"default": user}):
        fired = [m for m in check_redis_pools() if m.id == knob.check_when_unset]
    assert len(fired) == 1
    assert f"has no {knob.kwarg} ({knob.kwarg}=None)" in fired[0].msg


def test_blocking_only_knob_is_not_read_back_for_another_pool_class() -> None:
    [blocking_only] = [knob for knob in KNOBS if knob.pools == "blocking"]
    options = {"CONNECTION_POOL_CLASS": "redis.ConnectionPool"}
    read = pool_config(options, LOCATION)
    assert blocking_only.kwarg not in read.values
    assert not hasattr(built_pool(alias_config(**options)), blocking_only.kwarg)
    # ...and sizing does not fill it for such a class (it would fail the pool).
    sized = sized_caches({"default": alias_config(**options)}, environ=ENVIRON)["default"]
    assert blocking_only.kwarg not in sized["OPTIONS"]["CONNECTION_POOL_KWARGS"]
    assert blocking_only.kwarg not in pool_config(sized["OPTIONS"], LOCATION).values


@pytest.mark.parametrize("knob", KNOBS, ids=ids)
def test_command_reports_every_knob_with_its_source(knob: Knob, redis_db: RedisDB) -> None:
    caches = sized_caches(
        {
            "default": alias_config(
                redis_db.url, CONNECTION_POOL_KWARGS={knob.kwarg: USER_VALUE[knob.kwarg]}
            )
        },
        environ=ENVIRON,
    )
    with override_settings(CACHES=caches):
        out = io.StringIO()
        call_command("connhealth", "--format", "json", stdout=out)
        [pool] = json.loads(out.getvalue())["caches"]["default"]["pools"]
        table = io.StringIO()
        call_command("connhealth", "--no-color", stdout=table)
    assert (pool[knob.kwarg], pool["sources"][knob.kwarg]) == (USER_VALUE[knob.kwarg], "OPTIONS")
    assert f"{knob.kwarg} {USER_VALUE[knob.kwarg]} (OPTIONS)" in table.getvalue()
    for other in KNOBS:
        assert other.kwarg in pool


def test_ignored_option_is_reported_once_per_alias_whatever_its_urls() -> None:
    replicas = [LOCATION, "redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"]
    caches = sized_caches({"default": alias_config(replicas, SOCKET_TIMEOUT=0)}, environ=ENVIRON)
    with override_settings(CACHES=caches):
        assert [m.id for m in check_redis_pools()] == ["connhealth.W010"]
