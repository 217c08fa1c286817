"""The system checks in ``django_connhealth.checks``: one test per failure mode.

Checks only read settings, so none of these tests needs a running Redis.
"""

from __future__ import annotations

import importlib
import io
import sys
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.apps import apps
from django.core.checks import Error, Tags, Warning
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_connhealth import sized_caches
from django_connhealth.apps import ConnHealthConfig
from django_connhealth.checks import check_redis_pools, check_settings
from django_connhealth.factory import ConnectionFactory
from tests.helpers import APP_MIDDLEWARE, PROBE

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

Caches = dict[str, dict[str, Any]]

# redis-py 8 bounds a pool at 100 connections and times sockets out after 5 s by
# default; older versions allow 2**31 connections and wait forever.
REDIS_PY_8 = int(redis.__version__.split(".")[0]) >= 8

DJANGO_REDIS = "django_redis.cache.RedisCache"
URL = "redis://127.0.0.1:6379/0"
OTHER_URL = "redis://127.0.0.1:6379/1"
SECRET = "s3cret"
SECRET_URL = f"redis://:{SECRET}@127.0.0.1:6379/0"
#: The environment the "good" configuration is sized for: 6 threads per process.
ENVIRON = {"CONNHEALTH_WORKERS": "2", "CONNHEALTH_THREADS": "6"}
#: Every variable the concurrency of the test process could be read from.
CONCURRENCY_VARS = (
    "CONNHEALTH_WORKERS",
    "CONNHEALTH_THREADS",
    "CONNHEALTH_GREENLET_CAP",
    "GUNICORN_CMD_ARGS",
    "SERVER_SOFTWARE",
    "WEB_CONCURRENCY",
    "UWSGI_PROCESSES",
    "UWSGI_WORKERS",
    "UWSGI_THREADS",
)

STUCK_TEXT = "a Redis that stops answering blocks the worker for good."


class FactorySubclass(ConnectionFactory):
    """A user's own factory built on ours, as W007's hint suggests."""


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # Unsized configurations make the check read os.environ: keep the runner's out.
    for name in CONCURRENCY_VARS:
        monkeypatch.delenv(name, raising=False)


def user_caches(location: str = URL, *, extra: Caches | None = None, **options: Any) -> Caches:
    """The CACHES a user writes: the good one, plus what they set (OPTIONS, aliases)."""
    default: dict[str, Any] = {"BACKEND": DJANGO_REDIS, "LOCATION": location}
    if options:
        default["OPTIONS"] = options
    return {"default": default, **(extra or {})}


def sized(caches: Caches) -> Caches:
    return sized_caches(caches, environ=ENVIRON)


def good_caches() -> Caches:
    return sized(user_caches())


def run_checks(caches: Caches) -> list[CheckMessage]:
    with override_settings(CACHES=caches):
        return check_redis_pools()


def ids(messages: list[CheckMessage]) -> list[str]:
    return [message.id or "" for message in messages]


def unsized_defaults() -> list[str]:
    """Ids for a django-redis alias left to redis-py's defaults."""
    if REDIS_PY_8:
        return ["connhealth.W001"]
    return ["connhealth.E001", "connhealth.W005", "connhealth.W006"]


# ------------------------------------------------------------------ good configs


def test_good_config_has_no_messages() -> None:
    assert run_checks(good_caches()) == []


def test_good_config_with_shared_location_and_other_backends_has_no_messages() -> None:
    caches = sized(
        user_caches(
            extra={
                # one LOCATION, same options: one pool, nothing to warn about
                "sessions": {"BACKEND": DJANGO_REDIS, "LOCATION": URL},
                "replicas": {"BACKEND": DJANGO_REDIS, "LOCATION": [OTHER_URL, OTHER_URL + "0"]},
                "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            }
        )
    )
    assert run_checks(caches) == []


#: A Sentinel alias as django-redis's docs write it.
SENTINEL_OPTIONS: dict[str, Any] = {
    "CLIENT_CLASS": "django_redis.client.SentinelClient",
    "CONNECTION_POOL_CLASS": "redis.sentinel.SentinelConnectionPool",
    "SENTINELS": [("127.0.0.1", 26379), ("127.0.0.1", 26380)],
}


def test_sized_sentinel_alias_has_no_messages() -> None:
    assert run_checks(sized(user_caches("redis://mymaster/0", **SENTINEL_OPTIONS))) == []


def test_unsized_sentinel_alias_is_checked_for_each_role() -> None:
    """Its pools are redis-py's Sentinel pool, a plain pool: the checks of one, per role."""
    messages = run_checks(user_caches("redis://mymaster/0", **SENTINEL_OPTIONS))
    assert ids(messages) == unsized_defaults() * 2
    per_role = len(unsized_defaults())
    assert "LOCATION 'redis://mymaster/0?is_master=1' " in messages[0].msg
    assert "LOCATION 'redis://mymaster/0?is_master=0' " in messages[per_role].msg


def test_sentinel_pool_class_of_the_users_gets_w003() -> None:
    caches = sized(
        user_caches(
            "redis://mymaster/0",
            **{**SENTINEL_OPTIONS, "CONNECTION_POOL_CLASS": "tests.helpers.PlainSentinelPool"},
        )
    )
    assert ids(run_checks(caches)) == ["connhealth.W003"]


def test_sentinel_factory_of_the_users_gets_w007() -> None:
    caches = sized(
        user_caches(
            "redis://mymaster/0",
            CONNECTION_FACTORY="tests.helpers.OtherSentinelFactory",
            **SENTINEL_OPTIONS,
        )
    )
    [message] = run_checks(caches)
    assert message.id == "connhealth.W007"
    assert message.hint == (
        "Remove CONNECTION_FACTORY, or subclass "
        "django_connhealth.factory.SentinelConnectionFactory."
    )


# ------------------------------------------------------------------------ E004


@pytest.mark.parametrize(
    "sentinels",
    [None, [], "127.0.0.1:26379", [("127.0.0.1",)], ["127.0.0.1:26379"]],
    ids=["unset", "empty", "a string", "a lone host", "strings"],
)
def test_e004_sentinels_missing_or_malformed(sentinels: object) -> None:
    options: dict[str, Any] = {**SENTINEL_OPTIONS, "SENTINELS": sentinels}
    if sentinels is None:
        del options["SENTINELS"]
    messages = run_checks(sized(user_caches("redis://mymaster/0", **options)))
    assert messages == [
        Error(
            f"CACHES['default'] uses Sentinel but OPTIONS['SENTINELS']={sentinels!r} is not a "
            f"list of (host, port) pairs, so every use of the cache fails.",
            hint="Set OPTIONS['SENTINELS'] to the sentinels' addresses, e.g. "
            "[('sentinel-1', 26379), ('sentinel-2', 26379)].",
            id="connhealth.E004",
        )
    ]


# ------------------------------------------------------------------------ E001


def test_e001_unbounded_max_connections() -> None:
    messages = run_checks(sized(user_caches(CONNECTION_POOL_KWARGS={"max_connections": 2**31})))
    assert messages == [
        Error(
            "CACHES['default'] LOCATION 'redis://127.0.0.1:6379/0' has an unbounded "
            "connection pool (max_connections=2147483648).",
            hint="Wrap CACHES with django_connhealth.sized_caches(), or set "
            "CONNECTION_POOL_KWARGS['max_connections'].",
            id="connhealth.E001",
        )
    ]


def test_e001_unsized_alias_with_unbounded_max_connections() -> None:
    messages = run_checks(user_caches(CONNECTION_POOL_KWARGS={"max_connections": 2**31}))
    expected = (
        ["connhealth.E001"]
        if REDIS_PY_8
        else ["connhealth.E001", "connhealth.W005", "connhealth.W006"]
    )
    assert ids(messages) == expected


# ------------------------------------------------------------------------ E002


def test_e002_malformed_threads_for_unsized_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNHEALTH_THREADS", "abc")
    messages = run_checks(user_caches())
    assert ids(messages) == ["connhealth.E002", *unsized_defaults()]
    assert messages[0] == Error(
        "CONNHEALTH_THREADS='abc' is not valid.",
        hint="Set it to a whole number from 1 to 100000, or unset it.",
        id="connhealth.E002",
    )


def test_e002_not_raised_when_sized_caches_recorded_the_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caches = good_caches()
    monkeypatch.setenv("CONNHEALTH_THREADS", "abc")
    assert run_checks(caches) == []


# ------------------------------------------------------------------------ W001


def test_w001_unsized_alias_next_to_a_sized_one() -> None:
    caches = {**good_caches(), "raw": {"BACKEND": DJANGO_REDIS, "LOCATION": OTHER_URL}}
    messages = run_checks(caches)
    assert ids(messages) == unsized_defaults()
    if REDIS_PY_8:
        assert messages == [
            Warning(
                "CACHES['raw'] LOCATION 'redis://127.0.0.1:6379/1' is not sized for this "
                "server's threads (max_connections=100).",
                hint="Wrap CACHES with django_connhealth.sized_caches().",
                id="connhealth.W001",
            )
        ]


def test_w001_unsized_alias_with_bounded_pool() -> None:
    caches = user_caches(
        CONNECTION_POOL_KWARGS={"max_connections": 8}, SOCKET_TIMEOUT=1, SOCKET_CONNECT_TIMEOUT=1
    )
    assert run_checks(caches) == [
        Warning(
            "CACHES['default'] LOCATION 'redis://127.0.0.1:6379/0' is not sized for this "
            "server's threads (max_connections=8).",
            hint="Wrap CACHES with django_connhealth.sized_caches().",
            id="connhealth.W001",
        )
    ]


def test_w001_once_per_server_of_a_replicated_location() -> None:
    caches = user_caches(
        f"{URL},{OTHER_URL}",
        CONNECTION_POOL_KWARGS={"max_connections": 8},
        SOCKET_TIMEOUT=1,
    )
    messages = run_checks(caches)
    assert ids(messages) == ["connhealth.W001", "connhealth.W001"]
    assert "'redis://127.0.0.1:6379/0'" in messages[0].msg
    assert "'redis://127.0.0.1:6379/1'" in messages[1].msg


# ------------------------------------------------------------------------ W002


def test_w002_max_connections_below_threads() -> None:
    messages = run_checks(sized(user_caches(CONNECTION_POOL_KWARGS={"max_connections": 2})))
    assert messages == [
        Warning(
            "CACHES['default'] LOCATION 'redis://127.0.0.1:6379/0' has max_connections=2 "
            "(OPTIONS), fewer than the 6 threads of one process.",
            hint="Remove the max_connections you set so that sized_caches() derives it, "
            "or raise it to at least the thread count.",
            id="connhealth.W002",
        )
    ]


def test_w002_not_raised_at_exactly_the_thread_count() -> None:
    assert run_checks(sized(user_caches(CONNECTION_POOL_KWARGS={"max_connections": 6}))) == []


def test_w002_max_connections_from_location_query() -> None:
    messages = run_checks(sized(user_caches(f"{URL}?max_connections=1")))
    assert messages == [
        Warning(
            "CACHES['default'] LOCATION 'redis://127.0.0.1:6379/0?max_connections=1' has "
            "max_connections=1 (LOCATION), fewer than the 6 threads of one process.",
            hint="Remove the max_connections you set so that sized_caches() derives it, "
            "or raise it to at least the thread count.",
            id="connhealth.W002",
        )
    ]


@pytest.mark.parametrize(
    "caches",
    [
        pytest.param(user_caches(f"{URL}?max_connections=abc"), id="location-query"),
        pytest.param(user_caches(CONNECTION_POOL_KWARGS={"max_connections": "8"}), id="kwargs"),
    ],
)
def test_malformed_max_connections_does_not_crash_the_checks(caches: Caches) -> None:
    # redis-py rejects these itself when it builds the pool; the check must not raise.
    assert run_checks(sized(caches)) == []


# ------------------------------------------------------------------------ W003


def test_w003_non_blocking_pool_class() -> None:
    messages = run_checks(
        sized(user_caches(CONNECTION_POOL_CLASS="redis.connection.ConnectionPool"))
    )
    assert messages == [
        Warning(
            "CACHES['default'] OPTIONS['CONNECTION_POOL_CLASS']='redis.connection.ConnectionPool' "
            "fails with 'Too many connections' when full instead of waiting.",
            hint="Remove CONNECTION_POOL_CLASS so that sized_caches() installs its blocking "
            "pool, or use a redis.BlockingConnectionPool subclass.",
            id="connhealth.W003",
        )
    ]


def test_w003_once_per_alias_of_a_replicated_location() -> None:
    caches = sized(user_caches(f"{URL},{OTHER_URL}", CONNECTION_POOL_CLASS="redis.ConnectionPool"))
    assert ids(run_checks(caches)) == ["connhealth.W003"]


def test_w003_not_raised_for_a_blocking_pool_class() -> None:
    caches = sized(user_caches(CONNECTION_POOL_CLASS="redis.BlockingConnectionPool"))
    assert run_checks(caches) == []


def test_w003_not_raised_when_no_pool_class_is_set() -> None:
    # redis-py's default pool does not block either, but the alias is unsized:
    # W001 (or E001) says so, and its fix installs a blocking pool.
    assert "connhealth.W003" not in ids(run_checks(user_caches()))


# ------------------------------------------------------------------------ W004


def test_w004_shared_location_with_other_pool_options() -> None:
    caches = sized(
        user_caches(
            extra={
                "sessions": {
                    "BACKEND": DJANGO_REDIS,
                    "LOCATION": URL,
                    "OPTIONS": {"SOCKET_TIMEOUT": 3},
                }
            }
        )
    )
    assert run_checks(caches) == [
        Warning(
            "CACHES['sessions'] shares LOCATION 'redis://127.0.0.1:6379/0' with "
            "CACHES['default'] but sets other pool options (CONNECTION_POOL_KWARGS, "
            "SOCKET_TIMEOUT); django-redis builds one pool per URL, so only one alias's "
            "options apply.",
            hint="Give both aliases the same pool options, or point them at different URLs "
            "(another db number).",
            id="connhealth.W004",
        )
    ]


def test_w004_not_raised_for_different_db_numbers() -> None:
    caches = sized(
        user_caches(
            extra={
                "sessions": {
                    "BACKEND": DJANGO_REDIS,
                    "LOCATION": OTHER_URL,
                    "OPTIONS": {"SOCKET_TIMEOUT": 3},
                }
            }
        )
    )
    assert run_checks(caches) == []


# ------------------------------------------------------------------ W005, W006


def test_w005_socket_timeout_none() -> None:
    messages = run_checks(sized(user_caches(CONNECTION_POOL_KWARGS={"socket_timeout": None})))
    assert messages == [
        Warning(
            "CACHES['default'] LOCATION 'redis://127.0.0.1:6379/0' has no socket_timeout "
            f"(socket_timeout=None): {STUCK_TEXT}",
            hint="Set OPTIONS['SOCKET_TIMEOUT'] (seconds), or wrap CACHES with sized_caches().",
            id="connhealth.W005",
        )
    ]


def test_w005_w006_no_timeouts_at_all() -> None:
    caches = sized(
        user_caches(CONNECTION_POOL_KWARGS={"socket_timeout": None, "socket_connect_timeout": None})
    )
    messages = run_checks(caches)
    assert ids(messages) == ["connhealth.W005", "connhealth.W006"]
    assert messages[1] == Warning(
        "CACHES['default'] LOCATION 'redis://127.0.0.1:6379/0' has no socket_connect_timeout "
        f"(socket_connect_timeout=None): {STUCK_TEXT}",
        hint="Set OPTIONS['SOCKET_CONNECT_TIMEOUT'] (seconds), or wrap CACHES with sized_caches().",
        id="connhealth.W006",
    )


def test_w006_not_raised_when_the_connect_timeout_falls_back_to_socket_timeout() -> None:
    # Unset in OPTIONS and kwargs: redis-py connects with socket_timeout.
    caches = user_caches(CONNECTION_POOL_KWARGS={"max_connections": 8}, SOCKET_TIMEOUT=1)
    assert ids(run_checks(caches)) == ["connhealth.W001"]


def test_w006_not_raised_for_explicit_none_with_a_socket_timeout() -> None:
    caches = sized(user_caches(CONNECTION_POOL_KWARGS={"socket_connect_timeout": None}))
    assert run_checks(caches) == []


# ------------------------------------------------------------------------ W007


def test_w007_foreign_connection_factory_on_sized_alias() -> None:
    messages = run_checks(
        sized(user_caches(CONNECTION_FACTORY="django_redis.pool.ConnectionFactory"))
    )
    assert messages == [
        Warning(
            "CACHES['default'] OPTIONS['CONNECTION_FACTORY']='django_redis.pool.ConnectionFactory' "
            "may build one pool per thread, so the size meant for the process caps each thread "
            "instead.",
            hint="Remove CONNECTION_FACTORY, or subclass "
            "django_connhealth.factory.ConnectionFactory.",
            id="connhealth.W007",
        )
    ]


def test_w007_not_raised_for_a_subclass_of_our_factory() -> None:
    caches = sized(user_caches(CONNECTION_FACTORY=f"{__name__}.FactorySubclass"))
    assert run_checks(caches) == []


def test_w007_raised_for_a_factory_that_cannot_be_imported() -> None:
    caches = sized(user_caches(CONNECTION_FACTORY="no.such.Factory"))
    assert ids(run_checks(caches)) == ["connhealth.W007"]


# ------------------------------------------------------------------------ W008


def test_w008_django_builtin_redis_cache_unsized() -> None:
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": URL}
    }
    w008 = [message for message in run_checks(caches) if message.id == "connhealth.W008"]
    assert w008 == [
        Warning(
            "CACHES['default'] uses Django's built-in RedisCache unsized: its pools are "
            "per thread, so max_connections cannot bound a process.",
            hint="Wrap CACHES with django_connhealth.sized_caches(), which gives it one "
            "pool per server per process (and no pool_class of your own).",
            id="connhealth.W008",
        )
    ]
    assert run_checks(sized(caches)) == []


# ------------------------------------------------------------------------ W009


def test_probe_middleware_not_first_warns() -> None:
    def w009() -> list[str]:
        return [message.msg for message in check_settings() if message.id == "connhealth.W009"]

    with override_settings(MIDDLEWARE=[*APP_MIDDLEWARE[:2], PROBE, *APP_MIDDLEWARE[2:]]):
        [message] = w009()
        assert PROBE in message
    with override_settings(MIDDLEWARE=[PROBE, *APP_MIDDLEWARE]):
        assert w009() == []
    with override_settings(MIDDLEWARE=APP_MIDDLEWARE):
        assert w009() == []
    assert check_settings() == []


# ------------------------------------------------------------------ passwords


@pytest.mark.parametrize(
    "caches",
    [
        pytest.param(user_caches(SECRET_URL), id="W001-or-E001"),
        pytest.param(sized(user_caches(f"{SECRET_URL}?max_connections=1")), id="W002"),
        pytest.param(
            sized(user_caches(SECRET_URL, CONNECTION_POOL_KWARGS={"max_connections": 2**31})),
            id="E001",
        ),
        pytest.param(
            sized(
                user_caches(
                    SECRET_URL,
                    CONNECTION_POOL_KWARGS={"socket_timeout": None, "socket_connect_timeout": None},
                )
            ),
            id="W005-W006",
        ),
        pytest.param(
            sized(
                user_caches(
                    SECRET_URL,
                    extra={
                        "sessions": {
                            "BACKEND": DJANGO_REDIS,
                            "LOCATION": SECRET_URL,
                            "OPTIONS": {"SOCKET_TIMEOUT": 3},
                        }
                    },
                )
            ),
            id="W004",
        ),
        pytest.param(
            {
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": SECRET_URL,
                }
            },
            id="W008",
        ),
        pytest.param(user_caches(f"{URL}?password={SECRET}"), id="query-password"),
        pytest.param(user_caches(f"redis://{SECRET}@127.0.0.1:6379/0"), id="lone-userinfo"),
    ],
)
def test_no_message_shows_the_password(caches: Caches) -> None:
    messages = run_checks(caches)
    assert messages
    for message in messages:
        assert SECRET not in str(message)
        assert SECRET not in (message.hint or "")


def test_password_is_masked_not_dropped() -> None:
    [message] = run_checks(sized(user_caches(f"{SECRET_URL}?max_connections=1")))
    assert "LOCATION 'redis://:***@127.0.0.1:6379/0?max_connections=1'" in message.msg


# -------------------------------------------------------------- registration


def call_check() -> tuple[str, str, int]:
    """``manage.py check``: its stdout, its stderr and its exit code."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("check", stdout=out, stderr=err, no_color=True)
    except SystemCheckError as exc:
        # manage.py prints the report to stderr and exits with the error's code
        return out.getvalue(), err.getvalue() + str(exc), exc.returncode
    return out.getvalue(), err.getvalue(), 0


def test_check_command_good_config() -> None:
    with override_settings(CACHES=good_caches()):
        assert call_check() == ("System check identified no issues (0 silenced).\n", "", 0)


def test_check_command_reports_warnings_without_failing() -> None:
    caches = sized(user_caches(CONNECTION_POOL_CLASS="redis.connection.ConnectionPool"))
    with override_settings(CACHES=caches):
        out, err, code = call_check()
    assert (out, code) == ("", 0)
    assert err == (
        "System check identified some issues:\n"
        "\n"
        "WARNINGS:\n"
        "?: (connhealth.W003) CACHES['default'] "
        "OPTIONS['CONNECTION_POOL_CLASS']='redis.connection.ConnectionPool' fails with "
        "'Too many connections' when full instead of waiting.\n"
        "\tHINT: Remove CONNECTION_POOL_CLASS so that sized_caches() installs its blocking "
        "pool, or use a redis.BlockingConnectionPool subclass.\n"
        "\n"
        "System check identified 1 issue (0 silenced).\n"
    )


def test_check_command_fails_on_an_error() -> None:
    caches = sized(user_caches(CONNECTION_POOL_KWARGS={"max_connections": 2**31}))
    with override_settings(CACHES=caches):
        out, err, code = call_check()
    assert (out, code) == ("", 1)
    assert err == (
        "SystemCheckError: System check identified some issues:\n"
        "\n"
        "ERRORS:\n"
        "?: (connhealth.E001) CACHES['default'] LOCATION 'redis://127.0.0.1:6379/0' has an "
        "unbounded connection pool (max_connections=2147483648).\n"
        "\tHINT: Wrap CACHES with django_connhealth.sized_caches(), or set "
        "CONNECTION_POOL_KWARGS['max_connections'].\n"
        "\n"
        "System check identified 1 issue (0 silenced)."
    )


def test_check_registered_for_the_caches_tag() -> None:
    registered: list[Any] = registry.get_checks()
    assert check_redis_pools in registered
    assert Tags.caches in getattr(check_redis_pools, "tags", ())


def test_app_config_ready_registers_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    app_config = apps.get_app_config("django_connhealth")
    assert isinstance(app_config, ConnHealthConfig)
    # Start from an empty registry; monkeypatch puts the real one back afterwards.
    monkeypatch.setattr(registry, "registered_checks", set())
    importlib.reload(sys.modules["django_connhealth.checks"])
    assert registry.registered_checks == set()  # importing the module registers nothing

    app_config.ready()

    from django_connhealth.checks import check_redis_pools, check_settings

    registered: set[Any] = registry.registered_checks
    assert registered == {check_redis_pools, check_settings}


# ------------------------------------------------------------------------ W011


@pytest.mark.parametrize(
    "caches",
    [
        {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}},
        {},
    ],
    ids=["locmem", "dummy", "none"],
)
def test_w011_no_redis_backed_alias(caches: Caches) -> None:
    assert run_checks(caches) == [
        Warning(
            "CACHES has no Redis-backed alias, so health/ready has nothing to check "
            "and always passes.",
            hint="Point a CACHES alias at Redis (wrapped with sized_caches()), or leave "
            "health/ready out of your probes and use health/live.",
            id="connhealth.W011",
        )
    ]


@pytest.mark.parametrize(
    "backend",
    [DJANGO_REDIS, "django.core.cache.backends.redis.RedisCache"],
)
def test_w011_not_raised_for_any_redis_backed_alias(backend: str) -> None:
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "redis": {"BACKEND": backend, "LOCATION": URL},
    }
    assert "connhealth.W011" not in ids(run_checks(caches))
