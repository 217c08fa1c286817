"""ASGI entry point: ``uvicorn testproject.asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from django_connhealth import serve_probes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

application = get_asgi_application()

# Health probes on CONNHEALTH_PROBE_PORT, answered beside the event loop's requests.
serve_probes()
