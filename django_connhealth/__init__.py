"""Sized django-redis pools, health endpoints and pool reports for gunicorn and uWSGI."""

from __future__ import annotations

from django_connhealth.caches import sized_caches

__all__ = ["sized_caches"]
