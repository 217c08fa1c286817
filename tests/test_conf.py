"""Settings read from the environment (``django_connhealth.conf``): ``client_host`` and
``pool_headroom``; no Redis needed.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from django_connhealth import defaults
from django_connhealth.caches import sized_caches
from django_connhealth.conf import client_host
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
