"""Keep secrets out of output: passwords in Redis URLs become ``***``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_MASK = "***"
# A password in a query string (``?password=...``) is as secret as one in the netloc.
_QUERY_SECRET = re.compile(r"(?i)((?:^|&)(?:password|pass|auth)=)[^&]*")
_QUERY_SECRET_VALUE = re.compile(r"(?i)(?:^|&)(?:password|pass|auth)=([^&]*)")
# The same anywhere after a ``?`` or ``&``, before the URL is split (values may hold
# ``@`` or ``#``: up to the next ``&``, a fragment after the password masked with it).
_RAW_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|pass|auth)=)[^&]*")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    ``redis://user:secret@host:6379/0`` becomes ``redis://user:***@host:6379/0``.
    Text that does not parse as a URL is replaced whole rather than risk a leak.
    """
    url = _mask_raw_userinfo(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return _MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            netloc = f"{user}:{_MASK}@{hostinfo}"
        elif user and parts.scheme.startswith(("redis", "rediss", "unix")):
            # redis-py reads a lone userinfo as the password: redis://secret@host
            netloc = f"{_MASK}@{hostinfo}"
    query = _QUERY_SECRET.sub(lambda m: m.group(1) + _MASK, parts.query)
    redacted = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    authority = f"{parts.scheme}://"
    if (
        parts.scheme
        and not netloc
        and url.partition(":")[2].startswith("//")
        and not redacted.startswith(authority)
    ):
        # urlunsplit drops an empty authority for schemes it does not know: keep
        # unix:///tmp/redis.sock as written, not unix:/tmp/redis.sock
        redacted = authority + redacted[len(parts.scheme) + 1 :]
    return redacted


def _mask_raw_userinfo(url: str) -> str:
    """Mask a password written unencoded with ``/``, ``?`` or ``#`` in it.

    ``redis://:123/ss@host/0`` parses as host ``""``, path ``/ss@host/0``: the
    password would pass as a path. Query passwords are masked first (their
    value may hold an ``@``); then everything up to the last ``@`` that is not
    plain userinfo is taken for userinfo, and masked. A path that starts the
    rest (``unix:///tmp/a@b.sock``) holds no userinfo.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest = _RAW_QUERY_SECRET.sub(lambda m: m.group(1) + _MASK, rest)
    userinfo, at, host = rest.rpartition("@")
    if not at or userinfo.startswith("/") or not any(c in userinfo for c in "/?#"):
        return f"{scheme}{sep}{rest}"
    user, has_password, _ = userinfo.partition(":")
    if not has_password or any(c in user for c in "/?#"):
        return f"{scheme}{sep}{_MASK}@{host}"
    return f"{scheme}{sep}{user}:{_MASK}@{host}"


def secrets_of(url: str, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The passwords a cache alias holds for ``url``: in the URL and in OPTIONS."""
    found = [str(options.get("PASSWORD") or "")]
    try:
        parts = urlsplit(url)
        found.append(unquote(parts.password or ""))
    except ValueError:  # unparseable: its text never reaches output (redact_url masks it)
        pass
    else:
        found += [unquote(value) for value in _QUERY_SECRET_VALUE.findall(parts.query)]
    return tuple(secret for secret in found if secret)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in ``text`` (an error message, say) with ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text
