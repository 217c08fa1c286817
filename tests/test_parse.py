"""Parsers of the numbers users write (``django_connhealth.parse``); no Redis needed.

Counts are also parsed, and their errors checked, through every variable that takes
one in test_sizing.py; seconds through the settings in test_views.py and the
command's ``--watch`` in test_connhealth.py.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from django_connhealth import defaults
from django_connhealth.errors import SettingError
from django_connhealth.parse import env_count, parse_count, parse_seconds
from tests.helpers import PROPERTY


def test_parse_count_message() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse_count("WEB_CONCURRENCY", "2.5")
    assert str(excinfo.value) == (
        f"WEB_CONCURRENCY='2.5' is not valid: set it to a whole number from 1 "
        f"to {defaults.MAX_COUNT}, or unset it."
    )


@pytest.mark.parametrize(
    ("value", "zero", "expected"),
    [
        ("1.5", True, 1.5),
        (2, True, 2.0),
        ("0", True, 0.0),
        (" 3 ", False, 3.0),
        ("3600", False, 3600.0),
    ],
)
def test_parse_seconds_accepts(value: object, zero: bool, expected: float) -> None:
    assert parse_seconds("CONNHEALTH_X", value, zero=zero) == expected


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf", "-1", "3601", True, None, [1]])
def test_parse_seconds_refuses(value: object) -> None:
    with pytest.raises(SettingError) as excinfo:
        parse_seconds("CONNHEALTH_X", value)
    assert str(excinfo.value) == (
        f"CONNHEALTH_X={value!r} is not valid: set it to a number of seconds from 0 "
        f"to {defaults.MAX_SECONDS:g}, or unset it."
    )


def test_parse_seconds_zero_refused_when_zero_means_nothing() -> None:
    with pytest.raises(SettingError, match=r"from more than 0 to 3600, or unset it\.$"):
        parse_seconds("CONNHEALTH_CHECK_TIMEOUT", "0", zero=False)


@given(st.floats(min_value=0, max_value=0.0999), st.floats(min_value=3600.001, max_value=1e9))
@PROPERTY
def test_parse_seconds_flag_names_the_flag_and_its_range(low: float, high: float) -> None:
    for value in (str(low), str(high)):
        with pytest.raises(SettingError) as excinfo:
            parse_seconds("--watch", value, minimum=0.1, zero=False, maximum=3600, flag=True)
        assert str(excinfo.value) == (
            f"--watch {value!r} is not valid: give a number of seconds from 0.1 to 3600."
        )
    assert parse_seconds("--watch", "0.1", minimum=0.1, zero=False, maximum=3600, flag=True) == 0.1


@pytest.mark.parametrize(("environ", "expected"), [({}, None), ({"N": ""}, None), ({"N": "07"}, 7)])
def test_env_count_unset_or_empty_is_none(environ: dict[str, str], expected: int | None) -> None:
    assert env_count(environ, "N") == expected


def test_env_count_blank_is_malformed() -> None:
    with pytest.raises(SettingError, match=r"^N=' ' is not valid"):
        env_count({"N": " "}, "N")
