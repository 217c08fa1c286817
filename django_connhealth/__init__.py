"""Sized Redis pools, health endpoints and pool reports for Django under gunicorn and uWSGI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_connhealth.caches import sized_caches
    from django_connhealth.serving import serve_probes

__all__ = ["serve_probes", "sized_caches"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that importing a submodule (``python -m
    # django_connhealth.<module>``, the app loading) does not import them all.
    if name == "sized_caches":
        from django_connhealth.caches import sized_caches

        return sized_caches
    if name == "serve_probes":
        from django_connhealth.serving import serve_probes

        return serve_probes
    raise AttributeError(f"module 'django_connhealth' has no attribute {name!r}")
