"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from django_connhealth import sized_caches


def redis_caches(
    url: str, environ: dict[str, str] | None = None, **options: object
) -> dict[str, dict[str, object]]:
    """CACHES for one django-redis alias at ``url``, passed through sized_caches."""
    config: dict[str, object] = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}
    if options:
        config["OPTIONS"] = options
    return sized_caches({"default": config}, environ=environ or {})
