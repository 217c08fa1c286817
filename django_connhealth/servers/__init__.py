"""One module per kind of process a pool can live in: gunicorn, uWSGI, ASGI servers, Celery.

Each reads its own command line or options and says how many workers and threads
it runs; ``django_connhealth.sizing`` weighs them against the environment.
"""

from __future__ import annotations
