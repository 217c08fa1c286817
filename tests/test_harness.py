"""Self-tests of the Redis test harness against the real redis-server binary."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests import redis_server as redis_server_module
from tests.redis_server import RedisServer, SilentListener

if TYPE_CHECKING:
    import pathlib

    from tests.conftest import RedisDB, StartRedis


def assert_port_refuses(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def is_running(server: RedisServer) -> bool:
    # A call, so mypy does not narrow ``server.running`` across state changes.
    return server.running


def is_paused(server: RedisServer) -> bool:
    return server.paused


def test_start_ping_stop_leaves_no_process(tmp_path: pathlib.Path) -> None:
    server = RedisServer(tmp_path)
    with server:
        assert is_running(server)
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.url_for(3) == f"redis://127.0.0.1:{server.port}/3"
        assert server.info("server")["process_id"] == server.pid
        with server.client() as client:
            assert client.ping() is True
            client.set("k", "v")
            assert client.get("k") == b"v"
        port, proc = server.port, server.proc
    assert proc.poll() is not None
    assert not is_running(server)
    assert_port_refuses(port)
    server.stop()  # idempotent
    server.kill()  # idempotent too
    assert (tmp_path / f"redis-{port}.log").exists()


def test_kill_then_restart_on_same_port_loses_data(fresh_redis: RedisServer) -> None:
    port, old_pid = fresh_redis.port, fresh_redis.pid
    with fresh_redis.client() as client:
        client.set("k", "v")
        fresh_redis.kill()
        assert fresh_redis.proc.poll() == -9
        assert_port_refuses(port)
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        fresh_redis.restart()
        assert fresh_redis.port == port
        assert fresh_redis.pid != old_pid
        assert client.get("k") is None
        assert client.ping() is True


def test_restart_of_running_server_stops_it_first(fresh_redis: RedisServer) -> None:
    old_proc = fresh_redis.proc
    fresh_redis.restart()
    assert old_proc.poll() is not None
    assert fresh_redis.proc is not old_proc
    with fresh_redis.client() as client:
        assert client.ping() is True


def test_pause_times_out_and_resume_recovers(fresh_redis: RedisServer) -> None:
    with fresh_redis.client(socket_timeout=0.2) as client:
        assert client.ping() is True
        fresh_redis.pause()
        assert is_paused(fresh_redis)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - started < 1.5
        # New connections are accepted by the kernel but never answered either.
        with fresh_redis.client(socket_timeout=0.2) as other, pytest.raises(redis.TimeoutError):
            other.ping()
        fresh_redis.resume()
        assert not is_paused(fresh_redis)
        assert client.ping() is True


def test_stop_while_paused(tmp_path: pathlib.Path) -> None:
    server = RedisServer(tmp_path).start()
    server.pause()
    started = time.monotonic()
    server.stop()
    assert server.proc.returncode == 0
    assert time.monotonic() - started < 4


def test_password_server(start_redis: StartRedis) -> None:
    server = start_redis(password="s3cret")
    assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
    no_auth = redis.Redis(
        host=server.host, port=server.port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    with no_auth, pytest.raises(redis.AuthenticationError):
        no_auth.ping()
    wrong = redis.Redis.from_url(
        f"redis://:nope@127.0.0.1:{server.port}/0", socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    with wrong, pytest.raises(redis.AuthenticationError):
        wrong.ping()
    with redis.Redis.from_url(server.url, socket_timeout=2) as good:
        assert good.ping() is True
    with server.client(5) as client:
        assert client.ping() is True
    assert server.client_list() == []  # helper clients work with the password too


def test_start_redis_extra_args_and_multiple_servers(start_redis: StartRedis) -> None:
    first = start_redis(extra_args=["--maxmemory", "10mb"])
    second = start_redis()
    assert first.port != second.port
    assert first.info("memory")["maxmemory"] == 10 * 1024 * 1024
    assert second.info("memory")["maxmemory"] == 0


def test_client_list_sees_other_connection(fresh_redis: RedisServer) -> None:
    assert fresh_redis.client_list() == []
    with fresh_redis.client() as client:
        client.client_setname("harness-probe")
        entries = fresh_redis.client_list()
        assert [entry["name"] for entry in entries] == ["harness-probe"]
        assert entries[0]["id"] == str(client.client_id())
    assert fresh_redis.client_list() == []


def test_silent_listener_times_out(silent_listener: SilentListener) -> None:
    assert silent_listener.url == f"redis://127.0.0.1:{silent_listener.port}/0"
    client = redis.Redis.from_url(
        silent_listener.url, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    with client:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - started < 1.5
    assert silent_listener.connection_count >= 1


def test_silent_listener_stop_closes_everything() -> None:
    listener = SilentListener().start()
    port = listener.port
    conns = [socket.create_connection(("127.0.0.1", port), timeout=1) for _ in range(3)]
    try:
        deadline = time.monotonic() + 2
        while listener.connection_count < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert listener.connection_count == 3
        listener.stop()
        for conn in conns:
            assert conn.recv(1) == b""  # peer closed
        assert_port_refuses(port)
        listener.stop()  # idempotent
    finally:
        for conn in conns:
            conn.close()


def test_start_retries_when_port_taken_in_race(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy: int = squatter.getsockname()[1]
        ports = iter([busy, busy])
        real_free_port = redis_server_module.free_port
        monkeypatch.setattr(
            redis_server_module, "free_port", lambda: next(ports, None) or real_free_port()
        )
        with RedisServer(tmp_path) as server:
            assert server.port != busy
            assert server.info("server")["process_id"] == server.pid
        assert "Address already in use" in (tmp_path / f"redis-{busy}.log").read_text()


def test_restart_fails_clearly_when_port_taken(tmp_path: pathlib.Path) -> None:
    with RedisServer(tmp_path) as server:
        server.kill()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", server.port))
            squatter.listen()
            with pytest.raises(RuntimeError, match="Address already in use"):
                server.restart()
        assert not server.running


def test_start_failure_reports_log_tail(tmp_path: pathlib.Path) -> None:
    server = RedisServer(tmp_path, extra_args=["--no-such-option", "x"])
    with pytest.raises(RuntimeError, match="no-such-option"):
        server.start()
    assert not server.running


def test_redis_db_fixture(redis_db: RedisDB) -> None:
    assert 1 <= redis_db.db <= 15
    assert redis_db.url == redis_db.server.url_for(redis_db.db)
    with redis.Redis.from_url(redis_db.url, socket_timeout=2) as client:
        assert client.dbsize() == 0
        client.set("k", "v")
    with redis_db.server.client(redis_db.db) as client:
        assert client.get("k") == b"v"


def test_redis_db_is_on_session_server_and_empty(
    redis_db: RedisDB, redis_server: RedisServer
) -> None:
    assert redis_db.server is redis_server
    with redis_server.client(redis_db.db) as client:
        assert client.dbsize() == 0
