"""``django_connhealth.servers.uwsgi``: the running uWSGI's options. No Redis, no uWSGI.

The option mappings below are what ``uwsgi.opt`` held in a real uWSGI 2.0:
``--master --processes 2 --threads 4`` gave
``{'master': True, 'processes': b'2', 'threads': b'4', ...}``, and ``UWSGI_PROCESSES=2``
with ``--workers 5`` gave ``{'processes': b'2', 'workers': b'5', ...}`` (5 workers ran).
"""

from __future__ import annotations

import sys
import types

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_connhealth import defaults
from django_connhealth.servers.uwsgi import running_uwsgi_options
from django_connhealth.sizing import (
    Concurrency,
    process_concurrency,
    process_role,
    resolve_concurrency,
)
from tests.helpers import MALFORMED_COUNTS

CAP = defaults.GREENLET_CAP


def inside(options: dict[str, object], environ: dict[str, str] | None = None) -> Concurrency:
    return resolve_concurrency(environ or {}, uwsgi_options=options)


def test_master_processes_threads() -> None:
    options = {"master": True, "processes": b"2", "threads": b"4", "http-socket": b":0"}
    assert inside(options) == Concurrency(
        workers=2,
        threads=4,
        worker_class="uwsgi",
        sources={"workers": "uwsgi", "threads": "uwsgi", "worker_class": "uwsgi"},
        role="web",
    )


@pytest.mark.parametrize(
    ("options", "workers", "threads", "threads_source"),
    [
        ({"processes": b"2", "workers": b"5"}, 5, 1, "uwsgi"),
        ({"workers": b"5", "processes": b"2"}, 2, 1, "uwsgi"),
        ({"processes": [b"2", b"3"]}, 3, 1, "uwsgi"),
        ({"wsgi-file": b"app.py"}, 1, 1, "uwsgi"),
        ({"processes": b"3", "gevent": b"20"}, 3, 20, "uwsgi"),
        ({"gevent": b"1000"}, 1, CAP, "CONNHEALTH_GREENLET_CAP"),
        ({"async": b"10", "threads": b"2"}, 1, 10, "uwsgi"),
    ],
)
def test_options(
    options: dict[str, object], workers: int, threads: int, threads_source: str
) -> None:
    got = inside(options)
    assert (got.workers, got.threads, got.sources["threads"]) == (workers, threads, threads_source)


def test_uwsgi_beats_its_environment_variables_and_connhealth_wins() -> None:
    environ = {"UWSGI_PROCESSES": "9", "UWSGI_THREADS": "9", "WEB_CONCURRENCY": "9"}
    assert (inside({"processes": b"2"}, environ).workers, inside({}, environ).threads) == (2, 1)
    environ["CONNHEALTH_THREADS"] = "7"
    assert inside({"threads": b"4"}, environ).threads == 7


def test_outside_uwsgi_its_variables_count_as_before() -> None:
    got = resolve_concurrency({"UWSGI_PROCESSES": "4", "UWSGI_THREADS": "2"})
    assert (got.workers, got.threads, got.worker_class, got.role) == (4, 2, "uwsgi", "other")


@pytest.mark.parametrize("key", ["processes", "workers", "threads", "gevent", "async"])
@pytest.mark.parametrize("value", MALFORMED_COUNTS)
def test_malformed_option_names_option_and_value(key: str, value: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        inside({key: value.encode()})
    assert str(excinfo.value).startswith(f"uWSGI option {key}={value!r} is not valid: ")


def test_running_uwsgi_options(monkeypatch: pytest.MonkeyPatch) -> None:
    assert running_uwsgi_options() is None
    module = types.ModuleType("uwsgi")
    monkeypatch.setitem(sys.modules, "uwsgi", module)
    assert running_uwsgi_options() is None  # a module of that name without options
    module.opt = {"processes": b"3", "threads": b"2"}  # type: ignore[attr-defined]
    assert running_uwsgi_options() == {"processes": b"3", "threads": b"2"}
    assert process_role({}, ["uwsgi"]) == "web"
    got = process_concurrency({}, ["uwsgi"])
    assert (got.workers, got.threads, got.role) == (3, 2, "web")
