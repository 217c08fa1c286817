"""WSGI entry point: ``gunicorn testproject.wsgi``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from django_connhealth import serve_probes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

application = get_wsgi_application()

# Health probes on CONNHEALTH_PROBE_PORT, answered beside the request threads.
serve_probes()
