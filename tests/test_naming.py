"""Client names (``django_connhealth.naming``): made and parsed back; no Redis needed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_connhealth.naming import ClientName, client_name, parse_client_name
from tests.helpers import PROPERTY, is_valid_name


@pytest.mark.parametrize(
    ("host", "pid", "alias", "name", "parsed"),
    [
        ("web-1", 42, "default", "connhealth:web-1:42:default", ("web-1", 42, "default")),
        ("web 1", 7, "my cache", "connhealth:web_1:7:my_cache", ("web_1", 7, "my_cache")),
        ("héte", 1, "dëfault", "connhealth:h_te:1:d_fault", ("h_te", 1, "d_fault")),
        ("a\tb\nc\x00", 1, "x\x7fy", "connhealth:a_b_c_:1:x_y", ("a_b_c_", 1, "x_y")),
        ("[::1]", 9, "a:b:c", "connhealth:[__1]:9:a:b:c", ("[__1]", 9, "a:b:c")),
        ("h", 0, "", "connhealth:h:0:", ("h", 0, "")),
        ("", 5, "x", "connhealth::5:x", ("", 5, "x")),
    ],
)
def test_client_name(
    host: str, pid: int, alias: str, name: str, parsed: tuple[str, int, str]
) -> None:
    assert client_name(host, pid, alias) == name
    assert parse_client_name(name) == ClientName(*parsed)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "connhealth",
        "connhealth:h:1",
        "connhealth:h:x:default",
        "connhealth:h:-1:default",
        "connhealth:h::default",
        "connhealth:h:²:default",  # str.isdigit() is true, int() refuses it
        "connhealth:h:٣:default",
        "connhealth:h: 1:default",
        "other:h:1:default",
        "CONNHEALTH:h:1:default",
        "django-redis",
    ],
)
def test_parse_client_name_refuses_other_names(name: str) -> None:
    assert parse_client_name(name) is None


@PROPERTY
@given(host=st.text(), pid=st.integers(min_value=0, max_value=2**22), alias=st.text())
def test_client_name_any_text(host: str, pid: int, alias: str) -> None:
    name = client_name(host, pid, alias)

    assert is_valid_name(name)
    parsed = parse_client_name(name)
    assert parsed is not None
    assert parsed.pid == pid
    assert ":" not in parsed.host
    assert len(parsed.host) == len(host)
    assert len(parsed.alias) == len(alias)
    # names already valid come back unchanged
    assert client_name(parsed.host, parsed.pid, parsed.alias) == name


@PROPERTY
@given(name=st.text())
def test_parse_client_name_never_raises(name: str) -> None:
    parsed = parse_client_name(name)
    if parsed is not None:
        assert name.startswith("connhealth:")
        assert parsed.pid >= 0
