"""The errors this app raises: a malformed setting, a pool with no connection free."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import ConnectionError as RedisConnectionError


class SettingError(ImproperlyConfigured):
    """A malformed value: ``problem`` names it, ``fix`` says what to do."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix

    @property
    def hint(self) -> str:
        return self.fix[:1].upper() + self.fix[1:]


class PoolTimeoutError(RedisConnectionError):
    """No connection came free within the pool's wait timeout (or a caller's deadline).

    A subclass of redis-py's ConnectionError, so django-redis handles it as it
    handles any connection failure (``DJANGO_REDIS_IGNORE_EXCEPTIONS`` included).
    Importable from ``django_connhealth.pool`` too.
    """
