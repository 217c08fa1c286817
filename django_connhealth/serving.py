"""``serve_probes()``: one probe listener in every worker process, started after the fork.

Called from the project's ``wsgi.py`` or ``asgi.py``. Where the app loads in a
process that then forks its workers (gunicorn ``--preload``, uWSGI without
``lazy-apps``), that process starts none: each worker starts its own once
forked, so probes reach the workers, never the master.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from django.core.exceptions import ImproperlyConfigured

from django_connhealth.conf import conf
from django_connhealth.listener import ProbeListener, bind
from django_connhealth.servers.gunicorn import loading_in_arbiter
from django_connhealth.servers.uwsgi import in_uwsgi_master, running_uwsgi_options, threads_run

logger = logging.getLogger("django_connhealth")


def green_threads() -> bool:
    """Whether ``threading`` is monkey-patched (gevent, eventlet): threads are greenlets."""
    gevent = sys.modules.get("gevent.monkey")
    if gevent is not None and gevent.is_module_patched("threading"):
        return True
    eventlet = sys.modules.get("eventlet.patcher")
    return bool(eventlet is not None and eventlet.is_monkey_patched("thread"))


class Serving:
    """This process's listener, or the promise to start one in each forked worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listener: ProbeListener | None = None
        self._pid = 0
        self.deferred = False

    @property
    def listener(self) -> ProbeListener | None:
        return self._listener if self._pid == os.getpid() else None

    def serve(self) -> tuple[str, int] | None:
        """Start the listener here, or after the fork; the address served here, if any."""
        if conf.CONNHEALTH_PROBE_PORT is None:
            return None
        if in_uwsgi_master() or loading_in_arbiter():
            self.deferred = True  # the fork handler starts one in each worker
            return None
        return self.start()

    def start(self) -> tuple[str, int] | None:
        """Start this process's listener unless it runs; its address."""
        from django_connhealth.middleware import health_paths

        port = conf.CONNHEALTH_PROBE_PORT
        if port is None:
            return None
        if green_threads():
            logger.error(
                "CONNHEALTH_PROBE_PORT=%s is set, but this process's threads are greenlets "
                "(gevent or eventlet monkey-patching), so no probe listener runs: its event "
                "loop would be every request's. Probe the application's port instead.",
                port,
            )
            return None
        options = running_uwsgi_options()
        if options is not None and not threads_run(options):
            logger.error(
                "CONNHEALTH_PROBE_PORT=%s is set, but this uWSGI runs no threads the app "
                "starts, so no probe listener runs: add --enable-threads to uWSGI's options.",
                port,
            )
            return None
        with self._lock:
            current = self.listener
            if current is not None:
                return current.address
            paths = health_paths()
            listener = ProbeListener(bind(conf.CONNHEALTH_PROBE_HOST, port), paths)
            listener.start()
            self._listener, self._pid = listener, os.getpid()
            return listener.address

    def stop(self) -> None:
        """Stop this process's listener (tests; a process about to exit)."""
        with self._lock:
            listener, self._listener = self.listener, None
            self.deferred = False
        if listener is not None:
            listener.stop()

    def after_fork(self) -> None:
        """In a forked child: leave the parent's listener, start our own if promised.

        Once per process: under uWSGI with ``py-call-osafterfork`` both fork hooks run.
        """
        if self._pid == os.getpid():
            return
        self._lock = threading.Lock()
        inherited, self._listener = self._listener, None
        if inherited is not None:
            inherited.abandon()
        if self.deferred:
            # The first generation only: a process this worker forks later (multiprocessing,
            # a pool of its own) must not answer probes for it.
            self.deferred = False
            try:
                self.start()
            except ImproperlyConfigured as exc:
                # Python ignores what a fork handler raises: the worker would run on
                # without its listener. It stops, as it would have at import.
                logger.critical("connhealth: this worker cannot serve probes: %s", exc)
                os._exit(3)


serving = Serving()


def serve_probes() -> tuple[str, int] | None:
    """Answer health probes on ``CONNHEALTH_PROBE_PORT`` from a thread of each worker.

    Call it in ``wsgi.py`` or ``asgi.py`` once the application is made. Does
    nothing when the setting is unset. Returns the address this process
    serves (``None`` in a master that leaves probes to its workers).
    """
    return serving.serve()
