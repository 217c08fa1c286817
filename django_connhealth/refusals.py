"""What a server that answered refused, said as such, with the fix: never "unreachable"."""

from __future__ import annotations

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError


def refused_by_acl(exc: RedisError) -> bool:
    """Whether an error reply says the server's ACL (or its command table) refused a command."""
    return (
        isinstance(exc, NoPermissionError) or "NOPERM" in str(exc) or "unknown command" in str(exc)
    )


#: Refusals of a server that answered: the errors and words that say so, what it
#: refused, and the fix.
REFUSALS: tuple[tuple[tuple[type[Exception], ...], tuple[str, ...], str, str], ...] = (
    (
        (),
        ("max number of clients reached",),
        "refused the connection: its maxclients is reached",
        "raise maxclients (CONFIG SET maxclients, and in its config file), or make the "
        "fleet's pools fit under it{known}: fleet.max_connections in this command's "
        "report is what they may open, plus a rolling deploy's surge; with no report at "
        "hand, each worker's health/ready with the token gives its max_connections.",
    ),
    (
        (AuthenticationError,),
        ("wrongpass", "invalid password", "invalid username-password", "noauth"),
        "refused the credentials",
        "check the password (and user name) in LOCATION or OPTIONS['PASSWORD'].",
    ),
)


def failure(exc: BaseException, error: str, known: str = "") -> str:
    """What went wrong talking to a server, said as what it refused when it answered.

    ``known`` is what was last known of the fleet's budget on that server
    (such as ``" (40 connections at 21:50:01 UTC)"``), for a full server.
    """
    if isinstance(exc, ResponseError) and refused_by_acl(exc):
        return f"refused by the server's ACL: {error}"
    text = str(exc).lower()
    for errors, markers, what, fix in REFUSALS:
        if isinstance(exc, errors) or any(marker in text for marker in markers):
            return f"{what}: {error}. Fix: {fix.format(known=known)}"
    return f"unreachable: {error}"
