"""URL redaction (``django_connhealth.redact``); no Redis needed."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from django_connhealth.redact import redact_url
from tests.helpers import PROPERTY


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:secret@h/0", "redis://user:***@h/0"),
        ("redis://user:@h/0", "redis://user:***@h/0"),
        ("rediss://:secret@h:6380/0", "rediss://:***@h:6380/0"),
        (
            "rediss://default:s%40cr%3At@cache.example.com:6380/2",
            "rediss://default:***@cache.example.com:6380/2",
        ),
        ("unix://:secret@/tmp/r.sock?db=1", "unix://:***@/tmp/r.sock?db=1"),
        ("unix:///tmp/r.sock?db=1&password=secret", "unix:///tmp/r.sock?db=1&password=***"),
        ("redis://h:6379/0?password=secret", "redis://h:6379/0?password=***"),
        ("redis://h/0?db=1&PASSWORD=secret&x=1", "redis://h/0?db=1&PASSWORD=***&x=1"),
        ("redis://h/0?auth=secret", "redis://h/0?auth=***"),
        ("redis://h/0?pass=secret", "redis://h/0?pass=***"),
        ("redis://h/0?passwords=1", "redis://h/0?passwords=1"),
        ("redis://secret@h/0", "redis://***@h/0"),
        ("redis://:p@ss@h/0", "redis://:***@h/0"),
        # passwords written unencoded, with what would end the userinfo
        ("redis://:123/ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:a?b#c/d@host/0", "redis://user:***@host/0"),
        ("redis://se/cret@host/0", "redis://***@host/0"),
        ("redis://h/0?password=a@b", "redis://h/0?password=***"),
        ("redis://h/0?password=ab#cd", "redis://h/0?password=***"),
        ("redis://:p?ss@h/0?password=x@y&db=1", "redis://:***@h/0?password=***&db=1"),
        ("unix:///tmp/a@b.sock?db=1", "unix:///tmp/a@b.sock?db=1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://h", "redis://h"),
        ("http://user@h/", "http://user@h/"),
        ("redis://:secret@h:abc/0", "***"),
        ("redis://:secret@h:99999/0", "***"),
        ("redis://:secret@[::1/0", "***"),
        ("unix:///tmp/r.sock?db=1", "unix:///tmp/r.sock?db=1"),
        ("UNIX:///tmp/r.sock", "unix:///tmp/r.sock"),
        ("redis:///0?password=x", "redis:///0?password=***"),
        ("file:///tmp/x", "file:///tmp/x"),
        ("1://x", "1://x"),
        ("unix:/tmp/r.sock", "unix:/tmp/r.sock"),
        ("/tmp/r.sock", "/tmp/r.sock"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


URL_TEMPLATES = (
    "redis://:{p}@cache.internal:6379/0",
    "redis://user:{p}@cache.internal/0",
    "rediss://default:{p}@cache.internal:6380/1?ssl_cert_reqs=none",
    "unix://:{p}@/tmp/r.sock?db=1",
    "redis://cache.internal:6379/0?password={p}",
    "unix:///tmp/r.sock?db=1&password={p}",
    "redis://{p}@cache.internal:6379/0",
)


@PROPERTY
@given(template=st.sampled_from(URL_TEMPLATES), password=st.text(min_size=3))
def test_redacted_url_never_contains_the_password(template: str, password: str) -> None:
    quoted = quote(password, safe="")
    rest = template.replace("{p}", "")
    assume(password not in rest and quoted not in rest)
    assume(password not in "***" and quoted not in "***")

    redacted = redact_url(template.replace("{p}", quoted))

    assert password not in redacted
    assert quoted not in redacted
    assert redacted == redact_url(template.replace("{p}", "x"))


@PROPERTY
@given(url=st.text())
def test_redact_url_any_text(url: str) -> None:
    redacted = redact_url(url)
    assert isinstance(redacted, str)
    assert redact_url(redacted) == redacted


#: URL forms with the password as written by a user who did not percent-encode it.
RAW_TEMPLATES = (
    "redis://:{p}@cache.internal:6379/0",
    "redis://user:{p}@cache.internal/0",
    "rediss://default:{p}@cache.internal:6380/1?ssl_cert_reqs=none",
)
#: The same in a query string, where an ``&`` would end the value for redis-py too.
RAW_QUERY_TEMPLATES = (
    "redis://cache.internal:6379/0?password={p}",
    "redis://cache.internal:6379/0?db=1&password={p}",
)
ANY_CHARACTER = st.text(min_size=3)


@PROPERTY
@given(
    template_password=st.one_of(
        st.tuples(st.sampled_from(RAW_TEMPLATES), ANY_CHARACTER),
        st.tuples(
            st.sampled_from(RAW_QUERY_TEMPLATES),
            st.text(alphabet=st.characters(exclude_characters="&"), min_size=3),
        ),
    )
)
def test_redacted_url_never_contains_a_raw_password(template_password: tuple[str, str]) -> None:
    """Any character, ``/``, ``?``, ``#``, ``@`` and ``:`` included, unencoded."""
    template, password = template_password
    rest = template.replace("{p}", "")
    assume(password not in rest and password not in "***" and "***" not in password)
    redacted = redact_url(template.replace("{p}", password))
    assert password not in redacted
