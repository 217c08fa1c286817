"""Concurrency resolution (``django_connhealth.sizing``): pure functions, no Redis."""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import shlex
import sys
from typing import TYPE_CHECKING, Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from django_connhealth import defaults
from django_connhealth.caches import sized_caches
from django_connhealth.sizing import (
    Concurrency,
    gunicorn_argv,
    gunicorn_settings,
    parse_gunicorn_args,
    pool_size,
    process_concurrency,
    process_role,
    resolve_concurrency,
)
from tests.helpers import (
    DJANGO_REDIS,
    MALFORMED_COUNTS,
    PROPERTY,
    caches_for,
    pool_kwargs,
    sized_report,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


COUNT_VARIABLES = (
    "CONNHEALTH_WORKERS",
    "CONNHEALTH_THREADS",
    "WEB_CONCURRENCY",
    "UWSGI_PROCESSES",
    "UWSGI_WORKERS",
    "UWSGI_THREADS",
    "CONNHEALTH_GREENLET_CAP",
)
ALL_VARIABLES = (*COUNT_VARIABLES, "CONNHEALTH_POOL_HEADROOM")


def write_config(directory: Path, body: str, name: str = "gunicorn.conf.py") -> Path:
    path = directory / name
    path.write_text(body, encoding="utf-8")
    return path


# --------------------------------------------------------------------- defaults


def test_defaults_one_worker_one_thread() -> None:
    assert resolve_concurrency({}) == Concurrency(
        workers=1,
        threads=1,
        worker_class="sync",
        sources={"workers": "default", "threads": "default", "worker_class": "default"},
    )


def test_as_dict() -> None:
    concurrency = resolve_concurrency({"WEB_CONCURRENCY": "3", "GUNICORN_CMD_ARGS": "--threads 6"})
    assert concurrency.as_dict() == {
        "workers": 3,
        "threads": 6,
        "worker_class": "gthread",
        "role": "other",
        "sources": {
            "workers": "WEB_CONCURRENCY",
            "threads": "GUNICORN_CMD_ARGS",
            "worker_class": "default",
        },
    }


@pytest.mark.parametrize(("threads", "headroom", "expected"), [(1, 0, 1), (1, 2, 3), (8, 2, 10)])
def test_pool_size(threads: int, headroom: int, expected: int) -> None:
    assert pool_size(Concurrency(4, threads, "gthread"), headroom) == expected


# ------------------------------------------------------------------- precedence

# Every layer that can set the number of workers, highest precedence first, each
# with its own value so the winner is unambiguous.
WORKER_LAYERS = (
    ("CONNHEALTH_WORKERS", 11, "CONNHEALTH_WORKERS"),
    ("cli", 10, "gunicorn"),
    ("GUNICORN_CMD_ARGS", 9, "GUNICORN_CMD_ARGS"),
    ("config", 8, "gunicorn"),
    ("WEB_CONCURRENCY", 7, "WEB_CONCURRENCY"),
    ("UWSGI_PROCESSES", 6, "UWSGI_PROCESSES"),
    ("UWSGI_WORKERS", 5, "UWSGI_WORKERS"),
    ("default", 1, "default"),
)
THREAD_LAYERS = (
    ("CONNHEALTH_THREADS", 21, "CONNHEALTH_THREADS"),
    ("cli", 20, "gunicorn"),
    ("GUNICORN_CMD_ARGS", 19, "GUNICORN_CMD_ARGS"),
    ("config", 18, "gunicorn"),
    ("UWSGI_THREADS", 16, "UWSGI_THREADS"),
    ("default", 1, "default"),
)


def build(
    tmp_path: Path,
    worker_layers: tuple[tuple[str, int, str], ...],
    thread_layers: tuple[tuple[str, int, str], ...],
) -> tuple[dict[str, str], list[str]]:
    """An environment and a gunicorn command line that set the given layers."""
    environ: dict[str, str] = {}
    cli: list[str] = []
    cmd_args: list[str] = []
    config: list[str] = []
    for (layer, value, _), option in itertools.chain(
        ((layer, "--workers") for layer in worker_layers),
        ((layer, "--threads") for layer in thread_layers),
    ):
        if layer == "cli":
            cli += [option, str(value)]
        elif layer == "GUNICORN_CMD_ARGS":
            cmd_args += [option, str(value)]
        elif layer == "config":
            config.append(f"{option[2:]} = {value}")
        elif layer != "default":
            environ[layer] = str(value)
    if cmd_args:
        environ["GUNICORN_CMD_ARGS"] = shlex.join(cmd_args)
    if config:
        write_config(tmp_path, "\n".join(config) + "\n")
    return environ, [*cli, "project.wsgi:application"]


@pytest.mark.parametrize(
    ("workers_from", "threads_from"),
    list(itertools.product(range(len(WORKER_LAYERS)), range(len(THREAD_LAYERS)))),
)
def test_each_number_from_the_first_layer_that_sets_it(
    tmp_path: Path, workers_from: int, threads_from: int
) -> None:
    """Every layer from ``workers_from`` (and ``threads_from``) down is set; the first wins."""
    environ, argv = build(tmp_path, WORKER_LAYERS[workers_from:], THREAD_LAYERS[threads_from:])

    concurrency = resolve_concurrency(environ, argv, cwd=tmp_path)

    _, workers, workers_source = WORKER_LAYERS[workers_from]
    _, threads, threads_source = THREAD_LAYERS[threads_from]
    assert (concurrency.workers, concurrency.threads) == (workers, threads)
    assert concurrency.sources["workers"] == workers_source
    assert concurrency.sources["threads"] == threads_source


@pytest.mark.parametrize("workers_from", range(len(WORKER_LAYERS)))
def test_workers_alone(tmp_path: Path, workers_from: int) -> None:
    """Only one layer set: it is used, threads stay at the default."""
    layer = WORKER_LAYERS[workers_from]
    environ, argv = build(tmp_path, (layer,), ())

    concurrency = resolve_concurrency(environ, argv, cwd=tmp_path)

    assert (concurrency.workers, concurrency.threads) == (layer[1], 1)
    assert concurrency.sources["workers"] == layer[2]
    assert concurrency.sources["threads"] == "default"


@pytest.mark.parametrize("threads_from", range(len(THREAD_LAYERS)))
def test_threads_alone(tmp_path: Path, threads_from: int) -> None:
    layer = THREAD_LAYERS[threads_from]
    environ, argv = build(tmp_path, (), (layer,))

    concurrency = resolve_concurrency(environ, argv, cwd=tmp_path)

    assert (concurrency.workers, concurrency.threads) == (1, layer[1])
    assert concurrency.sources["workers"] == "default"
    assert concurrency.sources["threads"] == layer[2]


@pytest.mark.parametrize(
    ("environ", "workers", "source"),
    [
        ({"UWSGI_PROCESSES": "6", "UWSGI_WORKERS": "5"}, 6, "UWSGI_PROCESSES"),
        ({"UWSGI_WORKERS": "5"}, 5, "UWSGI_WORKERS"),
        ({"UWSGI_PROCESSES": "", "UWSGI_WORKERS": "5"}, 5, "UWSGI_WORKERS"),
        ({"WEB_CONCURRENCY": "", "UWSGI_PROCESSES": "6"}, 6, "UWSGI_PROCESSES"),
        ({"CONNHEALTH_WORKERS": "", "WEB_CONCURRENCY": "7"}, 7, "WEB_CONCURRENCY"),
        ({"CONNHEALTH_WORKERS": "", "WEB_CONCURRENCY": ""}, 1, "default"),
    ],
)
def test_empty_string_counts_as_unset(environ: dict[str, str], workers: int, source: str) -> None:
    concurrency = resolve_concurrency(environ)
    assert (concurrency.workers, concurrency.sources["workers"]) == (workers, source)


def test_empty_gunicorn_cmd_args_counts_as_unset() -> None:
    concurrency = resolve_concurrency({"GUNICORN_CMD_ARGS": "", "WEB_CONCURRENCY": "3"})
    assert (concurrency.workers, concurrency.sources["workers"]) == (3, "WEB_CONCURRENCY")


@pytest.mark.parametrize("value", ["4", " 4", "4 ", "\t4\n", "04", "0004"])
def test_count_surrounding_whitespace_and_leading_zeros(value: str) -> None:
    assert resolve_concurrency({"CONNHEALTH_WORKERS": value}).workers == 4


def test_max_count_accepted() -> None:
    value = str(defaults.MAX_COUNT)
    assert resolve_concurrency({"WEB_CONCURRENCY": value}).workers == defaults.MAX_COUNT


def test_spec_example() -> None:
    """SPEC section 1: WEB_CONCURRENCY=3, GUNICORN_CMD_ARGS="--threads 6"."""
    environ = {"WEB_CONCURRENCY": "3", "GUNICORN_CMD_ARGS": "--threads 6", "CONNHEALTH_HOST": "h"}

    concurrency = resolve_concurrency(environ)
    sized = sized_caches(caches_for(), environ=environ)

    assert (concurrency.workers, concurrency.threads) == (3, 6)
    assert concurrency.sources["workers"] == "WEB_CONCURRENCY"
    assert concurrency.sources["threads"] == "GUNICORN_CMD_ARGS"
    assert pool_kwargs(sized)["max_connections"] == 8
    assert sized_report(sized)["sources"]["max_connections"] == "derived"
    assert sized_report(sized)["headroom"] == 2
    assert sized_report(sized)["concurrency"] == concurrency.as_dict()


def test_pool_is_per_process_not_per_fleet() -> None:
    """Workers never multiply the pool: each process has its own."""
    environ = {"CONNHEALTH_WORKERS": "16", "CONNHEALTH_THREADS": "4", "CONNHEALTH_HOST": "h"}
    assert pool_kwargs(sized_caches(caches_for(), environ=environ))["max_connections"] == 6


# ------------------------------------------------------------ GUNICORN_CMD_ARGS


@pytest.mark.parametrize(
    ("cmd_args", "expected"),
    [
        ("-w 4", {"workers": "4"}),
        ("-w4", {"workers": "4"}),
        ("-w=4", {"workers": "4"}),
        ("--workers 4", {"workers": "4"}),
        ("--workers=4", {"workers": "4"}),
        ("--threads 8", {"threads": "8"}),
        ("--threads=8", {"threads": "8"}),
        ("-k gevent", {"worker_class": "gevent"}),
        ("-kgevent", {"worker_class": "gevent"}),
        ("--worker-class gthread", {"worker_class": "gthread"}),
        ("--worker-class=gthread", {"worker_class": "gthread"}),
        ("--worker-connections 200", {"worker_connections": "200"}),
        ("--worker-connections=200", {"worker_connections": "200"}),
        ("-c /etc/gunicorn.py", {"config": "/etc/gunicorn.py"}),
        ("--config=/etc/gunicorn.py", {"config": "/etc/gunicorn.py"}),
        (
            "--bind 0.0.0.0:8000 --timeout 30 --preload -w 4 --threads 8",
            {"workers": "4", "threads": "8"},
        ),
        (
            "-b :8000 -t 30 --workers=3 --access-logfile - --threads=2 --max-requests 1000",
            {"workers": "3", "threads": "2"},
        ),
        (
            "--worker-tmp-dir /dev/shm -k gevent --worker-connections 50 --log-level debug",
            {"worker_class": "gevent", "worker_connections": "50"},
        ),
        ("--preload --reload --bind unix:/run/app.sock", {}),
        ("-w 2 -w 3", {"workers": "3"}),
        ("", {}),
    ],
)
def test_parse_gunicorn_args(cmd_args: str, expected: dict[str, str]) -> None:
    assert parse_gunicorn_args(shlex.split(cmd_args), "GUNICORN_CMD_ARGS") == expected


@pytest.mark.parametrize(
    ("cmd_args", "workers", "threads", "worker_class"),
    [
        ("-w 4", 4, 1, "sync"),
        ("-w4", 4, 1, "sync"),
        ("--workers 4", 4, 1, "sync"),
        ("--workers=4", 4, 1, "sync"),
        ("--threads 8", 1, 8, "gthread"),
        ("--threads=8", 1, 8, "gthread"),
        ("-w 4 --threads 8", 4, 8, "gthread"),
        ("--worker-class gthread", 1, 1, "gthread"),
        ("--worker-class gthread --threads 4", 1, 4, "gthread"),
        ("-k sync --threads 1", 1, 1, "sync"),
        ("--bind 0.0.0.0:8000 --timeout 30 --preload -w 4 --threads 8", 4, 8, "gthread"),
        ("--bind 0.0.0.0:8000 --timeout 30 --preload", 1, 1, "sync"),
    ],
)
def test_gunicorn_cmd_args(cmd_args: str, workers: int, threads: int, worker_class: str) -> None:
    concurrency = resolve_concurrency({"GUNICORN_CMD_ARGS": cmd_args})
    assert (concurrency.workers, concurrency.threads, concurrency.worker_class) == (
        workers,
        threads,
        worker_class,
    )
    given = parse_gunicorn_args(shlex.split(cmd_args), "GUNICORN_CMD_ARGS")
    for key in ("workers", "threads"):
        assert concurrency.sources[key] == ("GUNICORN_CMD_ARGS" if key in given else "default")


def test_gunicorn_cmd_args_worker_class_source() -> None:
    concurrency = resolve_concurrency({"GUNICORN_CMD_ARGS": "-k gthread --threads 4 -w 2"})
    assert concurrency.sources == {
        "workers": "GUNICORN_CMD_ARGS",
        "threads": "GUNICORN_CMD_ARGS",
        "worker_class": "GUNICORN_CMD_ARGS",
    }


GUNICORN_ARG_FORMS = (
    "-w 4",
    "-w4",
    "-w=4",
    "--workers 4",
    "--workers=4",
    "--threads 8",
    "--threads=8",
    "-w 3 --threads 5",
    "--bind 0.0.0.0:8000 --timeout 30 --preload -w 4 --threads 8",
    "-b :8000 -t 30 --workers=3 --access-logfile - --threads=2 myproject.wsgi",
    "-w 2 -w 3",
)


@pytest.mark.parametrize("cmd_args", GUNICORN_ARG_FORMS)
def test_agrees_with_gunicorns_own_parser(cmd_args: str) -> None:
    """gunicorn itself reads the same workers and threads from the same arguments."""
    config = pytest.importorskip("gunicorn.config")
    namespace = config.Config().parser().parse_args(shlex.split(cmd_args))

    concurrency = resolve_concurrency({"GUNICORN_CMD_ARGS": cmd_args})

    assert concurrency.workers == (namespace.workers or 1)
    assert concurrency.threads == (namespace.threads or 1)


# ------------------------------------------------- command line and config file


def test_command_line_beats_gunicorn_cmd_args(tmp_path: Path) -> None:
    environ = {"GUNICORN_CMD_ARGS": "-w 4 --threads 8 -k gthread"}
    argv = ["-w", "2", "--threads", "3", "-k", "sync", "project.wsgi"]

    concurrency = resolve_concurrency(environ, argv, cwd=tmp_path)

    assert concurrency == Concurrency(
        workers=2,
        threads=3,
        worker_class="gthread",
        sources={"workers": "gunicorn", "threads": "gunicorn", "worker_class": "gunicorn"},
        role="web",
    )


def test_command_line_and_gunicorn_cmd_args_each_number_on_its_own(tmp_path: Path) -> None:
    concurrency = resolve_concurrency(
        {"GUNICORN_CMD_ARGS": "--threads 8 -w 9"}, ["-w", "2", "project.wsgi"], cwd=tmp_path
    )
    assert (concurrency.workers, concurrency.threads) == (2, 8)
    assert concurrency.sources["workers"] == "gunicorn"
    assert concurrency.sources["threads"] == "GUNICORN_CMD_ARGS"


def test_command_line_ignored_when_not_a_gunicorn_process(tmp_path: Path) -> None:
    """argv=None: not gunicorn, so only GUNICORN_CMD_ARGS and the environment count."""
    write_config(tmp_path, "workers = 5\nthreads = 3\n")
    concurrency = resolve_concurrency({"WEB_CONCURRENCY": "2"}, None, cwd=tmp_path)
    assert (concurrency.workers, concurrency.threads) == (2, 1)


@pytest.mark.parametrize("option", ["-c {}", "-c{}", "--config {}", "--config={}"])
def test_config_file_from_command_line(tmp_path: Path, option: str) -> None:
    path = write_config(tmp_path, "workers = 5\nthreads = 3\n", name="prod.conf.py")
    argv = [*shlex.split(option.format(shlex.quote(str(path)))), "project.wsgi"]

    concurrency = resolve_concurrency({}, argv, cwd=tmp_path)

    assert concurrency == Concurrency(
        workers=5,
        threads=3,
        worker_class="gthread",
        sources={"workers": "gunicorn", "threads": "gunicorn", "worker_class": "default"},
        role="web",
    )


def test_config_file_with_file_prefix(tmp_path: Path) -> None:
    """gunicorn accepts ``-c file:path`` as well as a bare path."""
    path = write_config(tmp_path, "workers = 5\nthreads = 3\n", name="prod.conf.py")
    concurrency = resolve_concurrency({}, ["-c", f"file:{path}"], cwd=tmp_path)
    assert (concurrency.workers, concurrency.threads) == (5, 3)


def test_config_file_from_gunicorn_cmd_args(tmp_path: Path) -> None:
    path = write_config(tmp_path, "workers = 5\nthreads = 3\n", name="env.conf.py")
    environ = {"GUNICORN_CMD_ARGS": f"-c {shlex.quote(str(path))}"}

    concurrency = resolve_concurrency(environ, [], cwd=tmp_path)

    assert (concurrency.workers, concurrency.threads) == (5, 3)
    assert concurrency.sources["workers"] == "gunicorn"


def test_config_file_on_command_line_beats_one_in_gunicorn_cmd_args(tmp_path: Path) -> None:
    from_env = write_config(tmp_path, "workers = 6\nthreads = 6\n", name="env.conf.py")
    from_cli = write_config(tmp_path, "workers = 5\n", name="cli.conf.py")
    environ = {"GUNICORN_CMD_ARGS": f"-c {shlex.quote(str(from_env))}"}

    concurrency = resolve_concurrency(environ, ["-c", str(from_cli)], cwd=tmp_path)

    # gunicorn loads one config file only: threads are not read from the other one.
    assert (concurrency.workers, concurrency.threads) == (5, 1)


def test_default_config_file_in_cwd(tmp_path: Path) -> None:
    write_config(tmp_path, "workers = 5\nthreads = 3\n")
    concurrency = resolve_concurrency({}, ["project.wsgi"], cwd=tmp_path)
    assert (concurrency.workers, concurrency.threads) == (5, 3)
    assert concurrency.sources["workers"] == concurrency.sources["threads"] == "gunicorn"


def test_default_config_file_not_read_when_one_is_named(tmp_path: Path) -> None:
    write_config(tmp_path, "workers = 5\nthreads = 3\n")
    named = write_config(tmp_path, "workers = 2\n", name="other.py")
    concurrency = resolve_concurrency({}, ["-c", str(named)], cwd=tmp_path)
    assert (concurrency.workers, concurrency.threads) == (2, 1)


def test_no_config_file_in_cwd(tmp_path: Path) -> None:
    assert resolve_concurrency({}, ["project.wsgi"], cwd=tmp_path).sources["workers"] == "default"


def test_config_file_precedence(tmp_path: Path) -> None:
    """config file < GUNICORN_CMD_ARGS < command line, key by key."""
    write_config(
        tmp_path, "workers = 5\nthreads = 3\nworker_class = 'gthread'\nworker_connections = 9\n"
    )
    environ = {"GUNICORN_CMD_ARGS": "--threads 4"}

    concurrency = resolve_concurrency(environ, ["-w", "2"], cwd=tmp_path)

    assert concurrency == Concurrency(
        workers=2,
        threads=4,
        worker_class="gthread",
        sources={"workers": "gunicorn", "threads": "GUNICORN_CMD_ARGS", "worker_class": "gunicorn"},
        role="web",
    )


def test_config_file_gevent(tmp_path: Path) -> None:
    write_config(tmp_path, "worker_class = 'gevent'\nworker_connections = 10\nworkers = 3\n")
    concurrency = resolve_concurrency({}, [], cwd=tmp_path)
    assert concurrency == Concurrency(
        workers=3,
        threads=10,
        worker_class="gevent",
        sources={"workers": "gunicorn", "threads": "gunicorn", "worker_class": "gunicorn"},
        role="web",
    )


def test_config_file_ignores_other_names(tmp_path: Path) -> None:
    write_config(tmp_path, "import os\nbind = '0.0.0.0:8000'\nWORKERS = 9\nworkers = None\n")
    concurrency = resolve_concurrency({"WEB_CONCURRENCY": "2"}, [], cwd=tmp_path)
    assert (concurrency.workers, concurrency.sources["workers"]) == (2, "WEB_CONCURRENCY")


@pytest.fixture
def config_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module ``connhealth_test_gunicorn_conf`` with workers and threads."""
    name = "connhealth_test_gunicorn_conf"
    write_config(tmp_path, "workers = 7\nthreads = 2\n", name=f"{name}.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_config_python_module(tmp_path: Path, config_module: str) -> None:
    concurrency = resolve_concurrency({}, ["-c", f"python:{config_module}"], cwd=tmp_path)
    assert (concurrency.workers, concurrency.threads) == (7, 2)
    assert concurrency.sources["workers"] == "gunicorn"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("workers = 1 / 0\n", "ZeroDivisionError"),
        ("workers = (\n", "SyntaxError"),
        ("import connhealth_no_such_module\n", "ModuleNotFoundError"),
        ("raise RuntimeError('boom')\n", "RuntimeError"),
    ],
)
def test_config_file_that_raises(tmp_path: Path, body: str, error: str) -> None:
    path = write_config(tmp_path, body, name="broken.conf.py")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        resolve_concurrency({}, ["-c", str(path)], cwd=tmp_path)
    assert str(excinfo.value) == (
        f"gunicorn config file {str(path)!r} could not be read ({error}): "
        "fix the file, or set CONNHEALTH_WORKERS and CONNHEALTH_THREADS."
    )


def test_default_config_file_that_raises(tmp_path: Path) -> None:
    path = write_config(tmp_path, "workers = undefined_name\n")
    with pytest.raises(ImproperlyConfigured, match=r"could not be read \(NameError\)") as excinfo:
        resolve_concurrency({}, [], cwd=tmp_path)
    assert repr(str(path)) in str(excinfo.value)


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.py"
    with pytest.raises(ImproperlyConfigured, match=r"could not be read \(FileNotFoundError\)"):
        resolve_concurrency({}, ["-c", str(path)], cwd=tmp_path)


def test_missing_config_module(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="'python:connhealth_no_such_module'"):
        resolve_concurrency({}, ["-c", "python:connhealth_no_such_module"], cwd=tmp_path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("workers = 0\n", "gunicorn --workers='0' is not valid"),
        ("threads = 'many'\n", "gunicorn --threads='many' is not valid"),
        ("workers = 2.5\n", "gunicorn --workers='2.5' is not valid"),
    ],
)
def test_malformed_value_in_config_file(tmp_path: Path, body: str, message: str) -> None:
    write_config(tmp_path, body)
    with pytest.raises(ImproperlyConfigured, match=message):
        resolve_concurrency({}, [], cwd=tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-w"], "argument -w/--workers: expected one argument"),
        (["--threads", "-w", "2"], "argument --threads: expected one argument"),
    ],
)
def test_malformed_command_line(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        resolve_concurrency({}, argv, cwd=tmp_path)
    assert str(excinfo.value) == (
        f"gunicorn's command line could not be read as gunicorn arguments ({message}): "
        "fix it so that `gunicorn` itself accepts it."
    )


def test_malformed_number_on_command_line(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^gunicorn --threads='abc' is not valid"):
        resolve_concurrency({}, ["--threads", "abc"], cwd=tmp_path)


def test_gunicorn_settings_merge(tmp_path: Path) -> None:
    write_config(tmp_path, "workers = 5\nthreads = 3\nworker_class = 'gthread'\n")
    merged = gunicorn_settings({"GUNICORN_CMD_ARGS": "--threads 4"}, ["-w", "2"], tmp_path)
    assert merged.values == {"workers": "2", "threads": "4", "worker_class": "gthread"}
    assert merged.sources == {
        "workers": "gunicorn",
        "threads": "GUNICORN_CMD_ARGS",
        "worker_class": "gunicorn",
    }


# ----------------------------------------------------------------- gunicorn_argv

GUNICORN_ENV = {"SERVER_SOFTWARE": "gunicorn/23.0.0"}


@pytest.mark.parametrize(
    ("environ", "argv", "expected"),
    [
        (GUNICORN_ENV, ["/x/bin/gunicorn", "-w", "4", "app:wsgi"], ["-w", "4", "app:wsgi"]),
        (GUNICORN_ENV, ["/x/gunicorn/__main__.py", "-w", "4"], ["-w", "4"]),
        (GUNICORN_ENV, ["gunicorn"], []),
        (GUNICORN_ENV, ["/usr/local/bin/gunicorn", "--threads=8"], ["--threads=8"]),
        (GUNICORN_ENV, [], None),
        (GUNICORN_ENV, ["/x/bin/uwsgi", "--processes", "4"], None),
        (GUNICORN_ENV, ["manage.py", "runserver"], None),
        (GUNICORN_ENV, ["/usr/bin/python3", "-w", "4"], None),
        ({}, ["/x/bin/gunicorn", "-w", "4"], None),
        ({"SERVER_SOFTWARE": ""}, ["/x/bin/gunicorn", "-w", "4"], None),
        ({"SERVER_SOFTWARE": "gunicorn"}, ["/x/bin/gunicorn", "-w", "4"], None),
        ({"SERVER_SOFTWARE": "uvicorn/0.30"}, ["/x/bin/gunicorn", "-w", "4"], None),
        ({"SERVER_SOFTWARE": "Gunicorn/23.0.0"}, ["/x/bin/gunicorn", "-w", "4"], None),
    ],
)
def test_gunicorn_argv(
    environ: dict[str, str], argv: list[str], expected: list[str] | None
) -> None:
    assert gunicorn_argv(environ, argv) == expected


def test_sized_caches_reads_the_gunicorn_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/x/bin/gunicorn", "-w", "4", "--threads", "8", "app"])
    environ = {**GUNICORN_ENV, "CONNHEALTH_HOST": "h", "GUNICORN_CMD_ARGS": "--threads 2"}

    sized = sized_caches(caches_for(), environ=environ)

    assert pool_kwargs(sized)["max_connections"] == 10
    assert sized_report(sized)["concurrency"]["sources"]["threads"] == "gunicorn"


def test_sized_caches_ignores_argv_outside_gunicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/x/bin/gunicorn", "-w", "4", "--threads", "8", "app"])
    sized = sized_caches(caches_for(), environ={"CONNHEALTH_HOST": "h"})
    assert pool_kwargs(sized)["max_connections"] == 3


# ------------------------------------------------------------------ worker class


@pytest.mark.parametrize(
    ("environ", "threads", "worker_class", "sources"),
    [
        (
            {"GUNICORN_CMD_ARGS": "--threads 4"},
            4,
            "gthread",
            {"workers": "default", "threads": "GUNICORN_CMD_ARGS", "worker_class": "default"},
        ),
        (
            {"GUNICORN_CMD_ARGS": "-k sync --threads 4"},
            4,
            "gthread",
            {
                "workers": "default",
                "threads": "GUNICORN_CMD_ARGS",
                "worker_class": "GUNICORN_CMD_ARGS",
            },
        ),
        (
            {"GUNICORN_CMD_ARGS": "-k gunicorn.workers.sync.SyncWorker --threads 2"},
            2,
            "gthread",
            {
                "workers": "default",
                "threads": "GUNICORN_CMD_ARGS",
                "worker_class": "GUNICORN_CMD_ARGS",
            },
        ),
        (
            {"GUNICORN_CMD_ARGS": "-k sync"},
            1,
            "sync",
            {"workers": "default", "threads": "default", "worker_class": "GUNICORN_CMD_ARGS"},
        ),
        (
            {"GUNICORN_CMD_ARGS": "-k gthread"},
            1,
            "gthread",
            {"workers": "default", "threads": "default", "worker_class": "GUNICORN_CMD_ARGS"},
        ),
        (
            {"GUNICORN_CMD_ARGS": "-k uvicorn.workers.UvicornWorker -w 4"},
            defaults.GREENLET_CAP,
            "uvicorn.workers.UvicornWorker",
            {
                "workers": "GUNICORN_CMD_ARGS",
                "threads": "asgi",
                "worker_class": "GUNICORN_CMD_ARGS",
            },
        ),
        (
            {"UWSGI_PROCESSES": "4", "UWSGI_THREADS": "2"},
            2,
            "uwsgi",
            {
                "workers": "UWSGI_PROCESSES",
                "threads": "UWSGI_THREADS",
                "worker_class": "UWSGI_PROCESSES",
            },
        ),
        (
            {"UWSGI_WORKERS": "4"},
            1,
            "uwsgi",
            {"workers": "UWSGI_WORKERS", "threads": "default", "worker_class": "UWSGI_WORKERS"},
        ),
        (
            {"CONNHEALTH_WORKERS": "3", "UWSGI_THREADS": "2"},
            2,
            "uwsgi",
            {
                "workers": "CONNHEALTH_WORKERS",
                "threads": "UWSGI_THREADS",
                "worker_class": "UWSGI_THREADS",
            },
        ),
        (
            {"WEB_CONCURRENCY": "3"},
            1,
            "sync",
            {"workers": "WEB_CONCURRENCY", "threads": "default", "worker_class": "default"},
        ),
    ],
)
def test_worker_class(
    environ: dict[str, str], threads: int, worker_class: str, sources: dict[str, str]
) -> None:
    concurrency = resolve_concurrency(environ)
    assert (concurrency.threads, concurrency.worker_class) == (threads, worker_class)
    assert concurrency.sources == sources


@pytest.mark.parametrize(
    ("environ", "threads", "source"),
    [
        # --worker-connections defaults to 1000, capped at GREENLET_CAP
        ({"GUNICORN_CMD_ARGS": "-k gevent"}, defaults.GREENLET_CAP, "CONNHEALTH_GREENLET_CAP"),
        (
            {"GUNICORN_CMD_ARGS": "-k gevent --worker-connections 200"},
            defaults.GREENLET_CAP,
            "CONNHEALTH_GREENLET_CAP",
        ),
        ({"GUNICORN_CMD_ARGS": "-k gevent --worker-connections 20"}, 20, "GUNICORN_CMD_ARGS"),
        (
            {"GUNICORN_CMD_ARGS": f"-k gevent --worker-connections {defaults.GREENLET_CAP}"},
            defaults.GREENLET_CAP,
            "GUNICORN_CMD_ARGS",
        ),
        (
            {"GUNICORN_CMD_ARGS": "-k gevent", "CONNHEALTH_GREENLET_CAP": "500"},
            500,
            "CONNHEALTH_GREENLET_CAP",
        ),
        ({"GUNICORN_CMD_ARGS": "-k gevent", "CONNHEALTH_GREENLET_CAP": "2000"}, 1000, "default"),
        (
            {
                "GUNICORN_CMD_ARGS": "-k gevent --worker-connections 200",
                "CONNHEALTH_GREENLET_CAP": "",
            },
            defaults.GREENLET_CAP,
            "CONNHEALTH_GREENLET_CAP",
        ),
        (
            {
                "GUNICORN_CMD_ARGS": "-k gevent --worker-connections 64",
                "CONNHEALTH_GREENLET_CAP": "64",
            },
            64,
            "GUNICORN_CMD_ARGS",
        ),
        # --threads means nothing to a greenlet worker
        (
            {"GUNICORN_CMD_ARGS": "-k gevent --threads 8 --worker-connections 10"},
            10,
            "GUNICORN_CMD_ARGS",
        ),
        ({"GUNICORN_CMD_ARGS": "-k gevent", "UWSGI_THREADS": "4"}, 32, "CONNHEALTH_GREENLET_CAP"),
        ({"GUNICORN_CMD_ARGS": "-k gevent", "CONNHEALTH_THREADS": "4"}, 4, "CONNHEALTH_THREADS"),
        (
            {"GUNICORN_CMD_ARGS": "-k gevent", "CONNHEALTH_THREADS": "100"},
            100,
            "CONNHEALTH_THREADS",
        ),
        ({"GUNICORN_CMD_ARGS": "-k eventlet --worker-connections 5"}, 5, "GUNICORN_CMD_ARGS"),
        (
            {
                "GUNICORN_CMD_ARGS": (
                    "-k gunicorn.workers.ggevent.GeventWorker --worker-connections 7"
                )
            },
            7,
            "GUNICORN_CMD_ARGS",
        ),
    ],
)
def test_gevent(environ: dict[str, str], threads: int, source: str) -> None:
    concurrency = resolve_concurrency(environ)
    assert concurrency.threads == threads
    assert concurrency.sources["threads"] == source
    assert concurrency.sources["worker_class"] == "GUNICORN_CMD_ARGS"
    assert concurrency.worker_class == shlex.split(environ["GUNICORN_CMD_ARGS"])[1]


def test_gevent_on_command_line(tmp_path: Path) -> None:
    concurrency = resolve_concurrency(
        {"GUNICORN_CMD_ARGS": "--worker-connections 5"},
        ["-k", "gevent", "--worker-connections", "12", "-w", "3"],
        cwd=tmp_path,
    )
    assert concurrency == Concurrency(
        workers=3,
        threads=12,
        worker_class="gevent",
        sources={"workers": "gunicorn", "threads": "gunicorn", "worker_class": "gunicorn"},
        role="web",
    )


def test_gevent_pool_size() -> None:
    environ = {"GUNICORN_CMD_ARGS": "-k gevent -w 4", "CONNHEALTH_HOST": "h"}
    sized = sized_caches(caches_for(), environ=environ)
    assert pool_kwargs(sized)["max_connections"] == defaults.GREENLET_CAP + defaults.POOL_HEADROOM


def test_worker_connections_ignored_for_threaded_workers() -> None:
    concurrency = resolve_concurrency({"GUNICORN_CMD_ARGS": "--worker-connections 50 --threads 3"})
    assert (concurrency.threads, concurrency.worker_class) == (3, "gthread")


# --------------------------------------------------------------- malformed values


def message_for(name: str, value: str) -> str:
    return f"{name}={value!r} is not valid"


@pytest.mark.parametrize("value", MALFORMED_COUNTS)
@pytest.mark.parametrize("name", COUNT_VARIABLES)
def test_malformed_count(name: str, value: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        resolve_concurrency({name: value})
    assert str(excinfo.value).startswith(message_for(name, value))
    assert str(excinfo.value).endswith(f"to {defaults.MAX_COUNT}, or unset it.")


@pytest.mark.parametrize("value", MALFORMED_COUNTS)
@pytest.mark.parametrize("name", COUNT_VARIABLES)
def test_malformed_count_in_sized_caches(name: str, value: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        sized_caches(caches_for(), environ={name: value, "CONNHEALTH_HOST": "h"})
    assert str(excinfo.value).startswith(message_for(name, value))


@pytest.mark.parametrize(
    "name",
    [
        "WEB_CONCURRENCY",
        "UWSGI_PROCESSES",
        "UWSGI_WORKERS",
        "UWSGI_THREADS",
        "CONNHEALTH_GREENLET_CAP",
    ],
)
def test_malformed_value_fails_even_when_a_higher_layer_is_set(name: str) -> None:
    """A typo in a shadowed (or, for the greenlet cap, unused) variable is still reported."""
    environ = {"CONNHEALTH_WORKERS": "2", "CONNHEALTH_THREADS": "2", name: "abc"}
    with pytest.raises(ImproperlyConfigured, match=message_for(name, "abc")):
        resolve_concurrency(environ)


def test_malformed_greenlet_cap_with_gevent() -> None:
    environ = {"GUNICORN_CMD_ARGS": "-k gevent", "CONNHEALTH_GREENLET_CAP": "0"}
    with pytest.raises(ImproperlyConfigured, match=message_for("CONNHEALTH_GREENLET_CAP", "0")):
        resolve_concurrency(environ)


@pytest.mark.parametrize(
    ("cmd_args", "message"),
    [
        ("--workers", "GUNICORN_CMD_ARGS could not be read as gunicorn arguments"),
        ("-w", "argument -w/--workers: expected one argument"),
        ("--workers --threads 4", "argument -w/--workers: expected one argument"),
        ("--threads", "argument --threads: expected one argument"),
        ("-k", "argument -k/--worker-class: expected one argument"),
        ("--work 4", "ambiguous option: --work could match --workers"),
        ("--threads abc", "GUNICORN_CMD_ARGS --threads='abc' is not valid"),
        ("--workers=abc", "GUNICORN_CMD_ARGS --workers='abc' is not valid"),
        ("-w 0", "GUNICORN_CMD_ARGS --workers='0' is not valid"),
        ("--threads=-3", "GUNICORN_CMD_ARGS --threads='-3' is not valid"),
        ("-w 2.5", "GUNICORN_CMD_ARGS --workers='2.5' is not valid"),
        (
            "-k gevent --worker-connections abc",
            "GUNICORN_CMD_ARGS --worker-connections='abc' is not valid",
        ),
        (
            "-k gevent --worker-connections 0",
            "GUNICORN_CMD_ARGS --worker-connections='0' is not valid",
        ),
        (
            "-w '4",
            'GUNICORN_CMD_ARGS="-w \'4" is not valid (No closing quotation): '
            "quote it the way a shell would.",
        ),
        (
            '--threads "8',
            "GUNICORN_CMD_ARGS='--threads \"8' is not valid (No closing quotation): "
            "quote it the way a shell would.",
        ),
        (
            "-w 4 \\",
            "GUNICORN_CMD_ARGS='-w 4 \\\\' is not valid (No escaped character): "
            "quote it the way a shell would.",
        ),
    ],
)
def test_malformed_gunicorn_cmd_args(cmd_args: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        resolve_concurrency({"GUNICORN_CMD_ARGS": cmd_args})
    assert message in str(excinfo.value)
    assert "GUNICORN_CMD_ARGS" in str(excinfo.value)


@pytest.mark.parametrize("cmd_args", ["--workers", "--threads abc", "-w '4"])
def test_malformed_gunicorn_cmd_args_beats_connhealth_variables(cmd_args: str) -> None:
    environ = {"GUNICORN_CMD_ARGS": cmd_args, "CONNHEALTH_WORKERS": "2", "CONNHEALTH_THREADS": "2"}
    with pytest.raises(ImproperlyConfigured, match="GUNICORN_CMD_ARGS"):
        resolve_concurrency(environ)


# ------------------------------------------------------------------- properties

SIZE_OPTIONS = (*ALL_VARIABLES, "GUNICORN_CMD_ARGS")

GUNICORN_TOKENS = st.sampled_from(
    [
        "-w",
        "-w4",
        "-w=4",
        "--workers",
        "--workers=3",
        "--threads",
        "--threads=8",
        "-k",
        "-kgevent",
        "--worker-class",
        "--worker-connections",
        "--worker-connections=5000",
        "--worker-tmp-dir",
        "--work",
        "--thread",
        "-c",
        "--config",
        "gevent",
        "gthread",
        "sync",
        "eventlet",
        "--bind",
        "0.0.0.0:8000",
        "--timeout",
        "30",
        "--preload",
        "--",
        "-",
        "=",
        "'",
        '"',
        "\\",
        "0",
        "1",
        "4",
        "-3",
        "2.5",
        "1e3",
        "٣",
        "²",
        "99999999999",
    ]
)
GUNICORN_CMD_ARGS = st.one_of(
    st.text(),
    st.lists(st.one_of(GUNICORN_TOKENS, st.text(max_size=5)), max_size=8).map(" ".join),
    st.lists(GUNICORN_TOKENS, max_size=6).flatmap(
        lambda tokens: st.sampled_from(["", "=", " "]).map(lambda sep: sep.join(tokens))
    ),
)
COUNT_TEXT = st.one_of(
    st.text(),
    st.integers(min_value=-5, max_value=defaults.MAX_COUNT + 5).map(str),
    st.from_regex(r"\s*[0-9]{1,7}\s*", fullmatch=True),
)


def check_concurrency(concurrency: Concurrency) -> None:
    assert isinstance(concurrency.workers, int)
    assert isinstance(concurrency.threads, int)
    assert 1 <= concurrency.workers <= defaults.MAX_COUNT
    assert 1 <= concurrency.threads <= defaults.MAX_COUNT
    assert concurrency.worker_class
    assert set(concurrency.sources) == {"workers", "threads", "worker_class"}


def attempt(environ: dict[str, str]) -> tuple[Concurrency, dict[str, dict[str, Any]]] | str:
    """Both public entry points on ``environ``, or the ImproperlyConfigured message."""
    try:
        return resolve_concurrency(environ), sized_caches(caches_for(), environ=environ)
    except ImproperlyConfigured as exc:
        return str(exc)


@PROPERTY
@given(name=st.sampled_from(ALL_VARIABLES), value=COUNT_TEXT)
def test_any_text_in_one_variable(name: str, value: str) -> None:
    """A positive count or ImproperlyConfigured naming the variable; nothing else."""
    outcome = attempt({name: value, "CONNHEALTH_HOST": "h"})
    if isinstance(outcome, str):
        assert message_for(name, value) in outcome
        return
    concurrency, sized = outcome
    check_concurrency(concurrency)
    assert pool_kwargs(sized)["max_connections"] >= 1
    if value:
        # accepted: digits, maybe with surrounding whitespace (str.strip's idea of it)
        assert value.strip().isascii()
        assert value.strip().isdigit()
        assert int(value.strip()) >= (0 if name == "CONNHEALTH_POOL_HEADROOM" else 1)


@PROPERTY
@given(cmd_args=GUNICORN_CMD_ARGS)
def test_any_gunicorn_cmd_args(cmd_args: str) -> None:
    outcome = attempt({"GUNICORN_CMD_ARGS": cmd_args, "CONNHEALTH_HOST": "h"})
    if isinstance(outcome, str):
        assert "GUNICORN_CMD_ARGS" in outcome
        return
    concurrency, sized = outcome
    check_concurrency(concurrency)
    assert pool_kwargs(sized)["max_connections"] == concurrency.threads + defaults.POOL_HEADROOM


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no-gunicorn-conf")


def names_no_config(arg: str) -> bool:
    # -c/--config (or an abbreviation of it) would run an arbitrary file as Python
    return not arg.startswith(("-c", "--c"))


@PROPERTY
@given(
    args=st.lists(
        st.one_of(GUNICORN_TOKENS, st.text(max_size=5)).filter(names_no_config), max_size=8
    )
)
def test_any_gunicorn_command_line(empty_dir: Path, args: list[str]) -> None:
    """argv is the real command line: no shell splitting, any token at all."""
    try:
        concurrency = resolve_concurrency({}, args, cwd=empty_dir)
    except ImproperlyConfigured as exc:
        message = str(exc)
        assert message.startswith(("gunicorn's command line", "gunicorn --", "gunicorn config"))
        return
    check_concurrency(concurrency)


@PROPERTY
@given(environ=st.dictionaries(st.sampled_from(SIZE_OPTIONS), COUNT_TEXT | GUNICORN_CMD_ARGS))
def test_any_environment(environ: dict[str, str]) -> None:
    outcome = attempt({**environ, "CONNHEALTH_HOST": "h"})
    if isinstance(outcome, str):
        assert any(name in outcome for name in SIZE_OPTIONS)
        return
    concurrency, sized = outcome
    check_concurrency(concurrency)
    assert sized_report(sized)["concurrency"] == concurrency.as_dict()


POSITIVE = st.integers(min_value=1, max_value=defaults.MAX_COUNT).map(str)
VALID_ENVIRON = st.fixed_dictionaries(
    {},
    optional={
        "CONNHEALTH_WORKERS": POSITIVE,
        "CONNHEALTH_THREADS": POSITIVE,
        "WEB_CONCURRENCY": POSITIVE,
        "UWSGI_PROCESSES": POSITIVE,
        "UWSGI_WORKERS": POSITIVE,
        "UWSGI_THREADS": POSITIVE,
        "CONNHEALTH_GREENLET_CAP": POSITIVE,
        "CONNHEALTH_POOL_HEADROOM": st.integers(min_value=0, max_value=defaults.MAX_COUNT).map(str),
        "GUNICORN_CMD_ARGS": st.lists(
            st.sampled_from(
                ["-w", "--threads", "--worker-connections", "-k gevent", "-k gthread", "-k sync"]
            ).flatmap(
                lambda option: (
                    st.just(option)
                    if option.startswith("-k")
                    else POSITIVE.map(lambda value: f"{option} {value}")
                )
            ),
            max_size=4,
        ).map(" ".join),
    },
)


@PROPERTY
@given(environ=VALID_ENVIRON)
def test_max_connections_is_threads_plus_headroom(environ: dict[str, str]) -> None:
    environ = {**environ, "CONNHEALTH_HOST": "h"}

    concurrency = resolve_concurrency(environ)
    sized = sized_caches(caches_for(), environ=environ)

    headroom = int(environ.get("CONNHEALTH_POOL_HEADROOM", defaults.POOL_HEADROOM))
    assert pool_kwargs(sized)["max_connections"] == concurrency.threads + headroom
    assert sized_report(sized)["headroom"] == headroom
    assert sized_report(sized)["concurrency"]["threads"] == concurrency.threads
    # workers never enter the per-process pool size
    if "CONNHEALTH_THREADS" in environ:
        assert concurrency.threads == int(environ["CONNHEALTH_THREADS"])
    if "CONNHEALTH_WORKERS" in environ:
        assert concurrency.workers == int(environ["CONNHEALTH_WORKERS"])


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
LOCATIONS = st.sampled_from(
    ["redis://a:6379/0", "redis://b:6379/1", "unix:///tmp/r.sock?db=2", "redis://:pw@c/0"]
)
CACHE_CONFIG = st.fixed_dictionaries(
    {
        "BACKEND": st.sampled_from(
            [
                DJANGO_REDIS,
                "django.core.cache.backends.redis.RedisCache",
                "django.core.cache.backends.locmem.LocMemCache",
            ]
        )
    },
    optional={
        "LOCATION": st.one_of(
            LOCATIONS,
            st.lists(LOCATIONS, max_size=3),
            st.lists(LOCATIONS, max_size=3).map(",".join),
        ),
        "TIMEOUT": st.integers(min_value=0, max_value=600),
        "KEY_PREFIX": st.text(max_size=5),
        "OPTIONS": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "CONNECTION_POOL_KWARGS": st.one_of(
                        st.none(),
                        st.dictionaries(
                            st.sampled_from(
                                [
                                    "max_connections",
                                    "timeout",
                                    "socket_timeout",
                                    "retry",
                                    "connhealth_retries",
                                    "health_check_interval",
                                    "other",
                                ]
                            ),
                            JSONISH,
                        ),
                    ),
                    "SOCKET_TIMEOUT": st.none() | st.floats(min_value=0, max_value=10),
                    "SOCKET_CONNECT_TIMEOUT": st.none() | st.floats(min_value=0, max_value=10),
                    "CONNECTION_POOL_CLASS": st.sampled_from(
                        ["redis.connection.ConnectionPool", "redis.BlockingConnectionPool"]
                    ),
                    "CONNECTION_FACTORY": st.just("myapp.Factory"),
                    "SENTINELS": st.lists(
                        st.tuples(st.just("sentinel"), st.integers(1, 65535)), max_size=2
                    ),
                    "CLIENT_CLASS": st.sampled_from(
                        [
                            "django_redis.client.DefaultClient",
                            "django_redis.client.SentinelClient",
                            "django_redis.client.ShardClient",
                        ]
                    ),
                    "extra": JSONISH,
                },
            ),
        ),
    },
)


@PROPERTY
@given(
    caches=st.dictionaries(st.sampled_from(["default", "sessions", "x:y", "ü"]), CACHE_CONFIG),
    environ=VALID_ENVIRON,
)
def test_sized_caches_never_mutates_its_input(
    caches: dict[str, dict[str, Any]], environ: dict[str, str]
) -> None:
    before = copy.deepcopy(caches)

    sized = sized_caches(caches, environ={**environ, "CONNHEALTH_HOST": "h"})

    assert caches == before
    assert sized is not caches
    assert list(sized) == list(caches)
    for alias, config in caches.items():
        assert sized[alias] is not config
        # everything but OPTIONS is copied as is
        assert {k: v for k, v in sized[alias].items() if k != "OPTIONS"} == {
            k: v for k, v in config.items() if k != "OPTIONS"
        }


@pytest.mark.parametrize("cmd_args", GUNICORN_ARG_FORMS)
def test_gunicorn_cmd_args_quiet(cmd_args: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Parsing never prints (argparse would print usage on error)."""
    resolve_concurrency({"GUNICORN_CMD_ARGS": cmd_args})
    with contextlib.suppress(ImproperlyConfigured):
        resolve_concurrency({"GUNICORN_CMD_ARGS": cmd_args + " --workers"})
    assert capsys.readouterr() == ("", "")


GUNICORN_ORACLE_TOKENS = st.sampled_from(
    [
        "-w",
        "--workers",
        "--threads",
        "-w2",
        "--workers=3",
        "--threads=5",
        "--bind",
        "--timeout",
        "--preload",
        "-b",
        "-t",
        "4",
        "8",
        "30",
        "0.0.0.0:8000",
        "app.wsgi",
    ]
)


@PROPERTY
@given(args=st.lists(GUNICORN_ORACLE_TOKENS, max_size=8))
def test_agrees_with_gunicorn_when_gunicorn_accepts(args: list[str]) -> None:
    """Whatever gunicorn itself reads from GUNICORN_CMD_ARGS, we read too."""
    config = pytest.importorskip("gunicorn.config")
    parser = config.Config().parser()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            namespace = parser.parse_args(args)
    except SystemExit:
        return
    cmd_args = shlex.join(args)
    concurrency = resolve_concurrency({"GUNICORN_CMD_ARGS": cmd_args})
    assert concurrency.workers == (namespace.workers or 1)
    assert concurrency.threads == (namespace.threads or 1)


# ------------------------------------------------------------------------- role

GUNICORN_SOFTWARE = {"SERVER_SOFTWARE": "gunicorn/23.0.0"}


@pytest.mark.parametrize(
    ("environ", "argv", "role"),
    [
        (GUNICORN_SOFTWARE, ["/venv/bin/gunicorn", "-w", "2", "app.wsgi"], "web"),
        ({}, ["/venv/bin/gunicorn", "-w", "2", "app.wsgi"], "other"),
        (GUNICORN_SOFTWARE, ["manage.py", "shell"], "other"),
        ({}, ["manage.py", "connhealth"], "other"),
        ({}, ["/venv/bin/pytest"], "other"),
        ({}, [], "other"),
    ],
)
def test_process_role(environ: dict[str, str], argv: list[str], role: str) -> None:
    assert process_role(environ, argv) == role
    assert process_concurrency(environ, argv).role == role


def test_role_of_resolve_concurrency() -> None:
    assert resolve_concurrency({}).role == "other"
    assert resolve_concurrency({"GUNICORN_CMD_ARGS": "-w 3"}).role == "other"
    assert resolve_concurrency({}, ["-w", "3"]).role == "web"
