"""This process's state, and the one place it is reset.

Module-level state of the app: the registry of sized pools, the pools the
connection factories keep, the readiness targets, prober and cached results,
the publishing locks and heartbeat, the settings cache, the health URL lookup,
the probe listener and the watchdog's counts.
:func:`reset_process_state` forgets it all; tests call it, and so does a
forked child, which keeps only the pools its cache clients already hold
(redis-py resets each on its first use there).
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from django_connhealth import conf, middleware, pool, probes, publish, readiness
from django_connhealth.adapters.django_builtin import SharedSizedPool
from django_connhealth.budget import budgets
from django_connhealth.factory import ConnectionFactory, SentinelConnectionFactory
from django_connhealth.heartbeat import heartbeat
from django_connhealth.servers.uwsgi import after_fork_in_workers, in_uwsgi_master
from django_connhealth.serving import serving
from django_connhealth.watchdog import watchdog


def reset_process_state(*, forked: bool = False) -> None:
    """Forget every process-global.

    Unless ``forked``, the prober's threads are stopped, every pooled
    connection is closed and the factories and the registry forget their
    pools, so new cache objects build new ones. ``forked`` (a child just made
    by ``os.fork()``) keeps the pools, which its cache clients hold, and
    acquires no lock, since a parent's thread may have held one: each is made anew.
    """
    if forked:
        probes.prober.after_fork()
        readiness.readiness.after_fork()
        probes.targets.after_fork()
        middleware.after_fork()
        pool.registry.after_fork()
        ConnectionFactory.after_fork()
        SentinelConnectionFactory.after_fork()
        SharedSizedPool.shared.after_fork()
        heartbeat.after_fork()
        watchdog.reset()
        serving.after_fork()  # last: it may start this worker's listener
    else:
        serving.stop()
        heartbeat.stop()  # first: it publishes through the pools closed below
        probes.prober.shutdown()
        readiness.readiness.clear()
        probes.targets.clear()
        middleware.forget_paths()
        ConnectionFactory.disconnect_all()
        SentinelConnectionFactory.disconnect_all()
        SharedSizedPool.shared.disconnect_all()
        pool.registry.clear()
        watchdog.reset()
        budgets.clear()
    publish.forget()
    conf.forget()


def _after_fork() -> None:
    reset_process_state(forked=True)


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """The ``setting_changed`` receiver: forget what was worked out from ``setting``."""
    conf.forget(setting)
    if setting == "CACHES":
        # results and pools of the old CACHES answer nothing about the new one
        probes.targets.clear()
        readiness.readiness.clear()
    elif setting == "CONNHEALTH_CACHE_SECONDS":
        readiness.readiness.clear()
    elif setting == "CONNHEALTH_PUBLISH_SECONDS":
        heartbeat.stop()  # the next publication starts it at the new pace
    elif setting == "ROOT_URLCONF":
        middleware.forget_paths()


_installed = False


def install_process_hooks() -> None:
    """Publish from every sized pool, unpublish at exit, reset in a forked child (once).

    A forked child is reset by Python's fork handler, and in a uWSGI worker by
    uWSGI's post-fork hook (its C fork runs no Python handler by default).
    """
    global _installed
    pool.set_due_hook(publish.publish_when_due)
    if not _installed:
        atexit.register(publish.unpublish_all)
        os.register_at_fork(after_in_child=_after_fork)
        if in_uwsgi_master():
            after_fork_in_workers(_after_fork)
        _installed = True
