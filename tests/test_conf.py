"""This app's settings (``django_connhealth.conf``): the Django settings, and
``client_host`` and ``pool_headroom`` read from an environ; no Redis needed.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from django_connhealth import defaults
from django_connhealth.caches import sized_caches
from django_connhealth.conf import SETTING_NAMES, Settings, client_host, conf, forget
from django_connhealth.errors import SettingError
from tests.helpers import (
    MALFORMED_COUNTS,
    PROPERTY,
    caches_for,
    is_valid_name,
    pool_kwargs,
    sized_report,
)

# ------------------------------------------------------------------ client_host


@pytest.mark.parametrize(
    ("environ", "host"),
    [
        ({"CONNHEALTH_HOST": "web-1"}, "web-1"),
        ({"CONNHEALTH_HOST": " web-1\n"}, "web-1"),
        ({"CONNHEALTH_HOST": "10.0.0.1:8000"}, "10.0.0.1_8000"),
        ({"CONNHEALTH_HOST": "pod name"}, "pod_name"),
    ],
)
def test_client_host(environ: dict[str, str], host: str) -> None:
    assert client_host(environ) == host


@pytest.mark.parametrize("environ", [{}, {"CONNHEALTH_HOST": ""}, {"CONNHEALTH_HOST": "   "}])
def test_client_host_defaults_to_hostname(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "box 1:x")
    assert client_host(environ) == "box_1_x"


def test_client_host_never_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "")
    assert client_host({}) == "unknown"


@PROPERTY
@given(environ=st.dictionaries(st.just("CONNHEALTH_HOST"), st.text()))
def test_client_host_any_text(environ: dict[str, str]) -> None:
    host = client_host(environ)
    assert is_valid_name(host)
    assert ":" not in host


# ---------------------------------------------------------------- pool_headroom


@pytest.mark.parametrize(
    ("headroom", "expected"), [(None, 8), ("", 8), ("0", 6), ("5", 11), (" 1 ", 7)]
)
def test_pool_headroom(headroom: str | None, expected: int) -> None:
    environ = {"GUNICORN_CMD_ARGS": "--threads 6", "CONNHEALTH_HOST": "h"}
    if headroom is not None:
        environ["CONNHEALTH_POOL_HEADROOM"] = headroom

    sized = sized_caches(caches_for(), environ=environ)

    assert pool_kwargs(sized)["max_connections"] == expected
    assert sized_report(sized)["headroom"] == expected - 6


MALFORMED_HEADROOM = (*(value for value in MALFORMED_COUNTS if value not in {"0", "00"}), "-1")


@pytest.mark.parametrize("value", MALFORMED_HEADROOM)
def test_malformed_headroom(value: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        sized_caches(caches_for(), environ={"CONNHEALTH_POOL_HEADROOM": value})
    assert str(excinfo.value) == (
        f"CONNHEALTH_POOL_HEADROOM={value!r} is not valid: set it to a whole number from 0 "
        f"to {defaults.MAX_COUNT}, or unset it."
    )


# --------------------------------------------------------------- Django settings


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("CONNHEALTH_CHECK_TIMEOUT", defaults.CHECK_TIMEOUT),
        ("CONNHEALTH_PUBLISH_SECONDS", defaults.PUBLISH_SECONDS),
        ("CONNHEALTH_CACHE_SECONDS", defaults.CACHE_SECONDS),
        ("CONNHEALTH_WATCHDOG_SECONDS", defaults.WATCHDOG_SECONDS),
    ],
)
def test_seconds_settings_default_setting_then_environment(
    name: str, default: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import override_settings

    with override_settings(**{name: None}):
        del_setting(name)
        monkeypatch.delenv(name, raising=False)
        assert getattr(conf, name) == default
        monkeypatch.setenv(name, "")  # empty counts as unset
        assert getattr(conf, name) == default
        monkeypatch.setenv(name, "2.5")
        assert getattr(conf, name) == 2.5
    with override_settings(**{name: 4}):  # the Django setting wins over the environment
        assert getattr(conf, name) == 4.0


def del_setting(name: str) -> None:
    """Make ``name`` undefined in Django's settings, as override_settings undoes afterwards."""
    from django.conf import settings

    delattr(settings, name)
    forget(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        (" \n", None),
        ("t0k3n", "t0k3n"),
        ("t0k3n\n", "t0k3n"),  # a mounted secret file's trailing newline
        ("  t0k3n \t", "t0k3n"),
    ],
)
def test_token_setting_ignores_surrounding_whitespace(
    value: str | None, expected: str | None
) -> None:
    from django.test import override_settings

    with override_settings(CONNHEALTH_TOKEN=value):
        assert expected == conf.CONNHEALTH_TOKEN


@pytest.mark.parametrize("value", [42, b"t0k3n", ["t0k3n"]])
def test_token_setting_refuses_other_types(value: object) -> None:
    from django.test import override_settings

    with override_settings(CONNHEALTH_TOKEN=value), pytest.raises(SettingError) as excinfo:
        conf.CONNHEALTH_TOKEN  # noqa: B018 -- the property raises
    assert str(excinfo.value) == "CONNHEALTH_TOKEN is not valid: set it to a string, or unset it."
    assert "t0k3n" not in str(excinfo.value)


@pytest.mark.parametrize("value", [0.001, 0.05, "0.099"])
def test_publish_interval_below_the_minimum_is_refused(value: object) -> None:
    from django.test import override_settings

    with (
        override_settings(CONNHEALTH_PUBLISH_SECONDS=value),
        pytest.raises(SettingError) as excinfo,
    ):
        conf.CONNHEALTH_PUBLISH_SECONDS  # noqa: B018 -- the property raises
    assert str(excinfo.value) == (
        f"CONNHEALTH_PUBLISH_SECONDS={value!r} is not valid: set it to 0 (off) or a number of "
        f"seconds from {defaults.PUBLISH_MIN_SECONDS:g} to {defaults.MAX_SECONDS:g}, or unset it."
    )
    with override_settings(CONNHEALTH_PUBLISH_SECONDS=defaults.PUBLISH_MIN_SECONDS):
        assert conf.CONNHEALTH_PUBLISH_SECONDS == defaults.PUBLISH_MIN_SECONDS
    with override_settings(CONNHEALTH_PUBLISH_SECONDS=0):  # off
        assert conf.CONNHEALTH_PUBLISH_SECONDS == 0


def test_settings_are_read_again_after_forget() -> None:
    from django.conf import settings

    name = "CONNHEALTH_CHECK_TIMEOUT"
    assert conf.CONNHEALTH_CHECK_TIMEOUT == defaults.CHECK_TIMEOUT
    setattr(settings, name, 3)  # no setting_changed: the cached answer stays
    try:
        assert conf.CONNHEALTH_CHECK_TIMEOUT == defaults.CHECK_TIMEOUT
        forget()
        assert conf.CONNHEALTH_CHECK_TIMEOUT == 3.0
    finally:
        delattr(settings, name)
        forget()
    assert set(SETTING_NAMES) == {name for name in dir(Settings) if name.startswith("CONNHEALTH_")}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        (0, None),
        ("0", None),
        (8081, 8081),
        (" 9000 ", 9000),
        (65535, 65535),
    ],
)
def test_probe_port(value: object, expected: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.test import override_settings

    with override_settings(CONNHEALTH_PROBE_PORT=None):
        del_setting("CONNHEALTH_PROBE_PORT")
        if value is None:
            monkeypatch.delenv("CONNHEALTH_PROBE_PORT", raising=False)
        else:
            monkeypatch.setenv("CONNHEALTH_PROBE_PORT", str(value))
        assert expected == conf.CONNHEALTH_PROBE_PORT
    if value not in (None, ""):  # an empty Django setting is malformed, not unset
        with override_settings(CONNHEALTH_PROBE_PORT=value):
            assert expected == conf.CONNHEALTH_PROBE_PORT


@pytest.mark.parametrize("value", [-1, 65536, "80.5", "http", " ", 10**6, True])
def test_malformed_probe_port_names_the_setting(value: object) -> None:
    from django.test import override_settings

    with override_settings(CONNHEALTH_PROBE_PORT=value), pytest.raises(SettingError) as raised:
        conf.CONNHEALTH_PROBE_PORT  # noqa: B018 -- the property raises
    assert str(raised.value) == (
        f"CONNHEALTH_PROBE_PORT={value!r} is not a TCP port: "
        "set it to a port from 1 to 65535, or 0 (no probe listener)."
    )


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), (" ::1 ", "::1")]
)
def test_probe_host(value: str | None, expected: str) -> None:
    from django.test import override_settings

    with override_settings(CONNHEALTH_PROBE_HOST=value):
        if value is None:
            del_setting("CONNHEALTH_PROBE_HOST")
        assert expected == conf.CONNHEALTH_PROBE_HOST


@pytest.mark.parametrize("value", ["", "  ", 8080])
def test_malformed_probe_host_names_the_setting(value: object) -> None:
    from django.test import override_settings

    with override_settings(CONNHEALTH_PROBE_HOST=value), pytest.raises(SettingError) as raised:
        conf.CONNHEALTH_PROBE_HOST  # noqa: B018 -- the property raises
    assert str(raised.value).startswith(f"CONNHEALTH_PROBE_HOST={value!r} is not an address: ")
