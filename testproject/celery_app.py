"""A Celery worker for testproject: ``celery -A testproject.celery_app worker``.

The broker is ``CELERY_BROKER_URL`` (a test redis-server). When the worker is
ready it writes its sized pool's figures to ``celery-pool.json`` in
``TESTPROJECT_VAR_DIR``, as ``/pool`` answers them for a web worker. The task
``testproject.touch`` uses the cache as a task does, in whichever process runs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

app = Celery("testproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.broker_url = os.environ.get("CELERY_BROKER_URL")


def write_pool_figures(**_: Any) -> None:
    from django.conf import settings
    from django.core.cache import cache

    from django_connhealth.pool import live_pools

    cache.set("testproject:celery", os.getpid(), timeout=60)  # builds the pool
    caches: dict[str, dict[str, Any]] = settings.CACHES
    recorded = caches["default"]["OPTIONS"]["CONNHEALTH"]
    figures = {
        "pid": os.getpid(),
        "concurrency": recorded["concurrency"],
        "pools": [{"alias": pool.alias, **pool.figures().as_dict()} for pool in live_pools()],
    }
    target = Path(os.environ["TESTPROJECT_VAR_DIR"]) / "celery-pool.json"
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(figures), encoding="utf-8")
    partial.replace(target)


worker_ready.connect(write_pool_figures, weak=False)


@app.task(name="testproject.touch")  # type: ignore[untyped-decorator]
def touch() -> int:
    """Use the cache once, in the process that runs the task: its pid."""
    from django.core.cache import cache

    cache.set(f"testproject:touch:{os.getpid()}", 1, timeout=60)
    return os.getpid()
