"""``django_connhealth.refusals``: what a server refused, said with the fix. No Redis needed.

The same texts from real servers (maxclients, a wrong or missing password, ACL
users) are in test_connhealth.py.
"""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    ResponseError,
)

from django_connhealth.refusals import failure, refused_by_acl


@pytest.mark.parametrize(
    ("exc", "start"),
    [
        (NoPermissionError("NOPERM no permission to run 'info'"), "refused by the server's ACL: "),
        (ResponseError("unknown command 'CLIENT'"), "refused by the server's ACL: "),
        (
            ConnectionError("max number of clients reached"),
            "refused the connection: its maxclients is reached: ",
        ),
        (AuthenticationError("invalid username-password pair"), "refused the credentials: "),
        (ResponseError("WRONGPASS invalid username-password pair"), "refused the credentials: "),
        (ConnectionError("Error 111 connecting to h:1. Connection refused."), "unreachable: "),
        (TimeoutError("timed out"), "unreachable: "),
    ],
)
def test_failure_says_what_was_refused(exc: Exception, start: str) -> None:
    said = failure(exc, "E: text")
    assert said.startswith(start + "E: text"), said
    assert ("Fix: " in said) is start.startswith(("refused the connection", "refused the cred"))


def test_refused_by_acl_is_an_error_reply_only() -> None:
    assert refused_by_acl(NoPermissionError("x"))
    assert refused_by_acl(ResponseError("NOPERM this user has no permissions"))
    assert not refused_by_acl(ResponseError("WRONGTYPE Operation against a key"))
