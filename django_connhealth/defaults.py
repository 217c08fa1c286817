"""Plain constants: the defaults this app fills in and documents in README.rst."""

from __future__ import annotations

#: Connections each process keeps beyond one per thread, for work that holds a
#: second connection (a pipeline next to a plain call, a health probe).
POOL_HEADROOM = 2

#: Seconds a request waits for a free pooled connection before it fails with a
#: clear error instead of queueing without end behind a slow Redis.
POOL_TIMEOUT = 2.0

#: Seconds a command may wait for Redis to answer. Cache commands take well
#: under a millisecond; one second marks a server that is stuck, not busy.
SOCKET_TIMEOUT = 1.0

#: Seconds to open a TCP connection. A reachable server answers in
#: milliseconds even across zones; a dead one must not hold a worker thread.
SOCKET_CONNECT_TIMEOUT = 0.5

#: Seconds a pooled connection may sit idle before it is checked with a PING on
#: its next use, so connections dropped by a proxy or a failover are replaced.
HEALTH_CHECK_INTERVAL = 30

#: Retries of a command that failed because its connection broke (never of a
#: timeout: a stuck server would only make the caller wait longer).
RETRIES = 2
RETRY_BACKOFF_BASE = 0.01
RETRY_BACKOFF_CAP = 0.1

#: gunicorn's own default for ``--worker-connections``.
GUNICORN_WORKER_CONNECTIONS = 1000

#: Most connections one greenlet (gevent) worker's pool may hold, whatever
#: ``--worker-connections`` says. See README.rst, CONNHEALTH_GREENLET_CAP.
GREENLET_CAP = 32

#: Largest value accepted for a worker, thread or headroom count.
MAX_COUNT = 100_000

#: The pool class and the connection factory ``sized_caches`` puts in OPTIONS.
POOL_CLASS = "django_connhealth.pool.SizedConnectionPool"
CONNECTION_FACTORY = "django_connhealth.factory.ConnectionFactory"

#: The OPTIONS key under which ``sized_caches`` records what it computed.
OPTIONS_KEY = "CONNHEALTH"

#: Prefix of the name every sized connection carries on the server.
CLIENT_NAME_PREFIX = "connhealth"

#: Seconds a readiness answer may take (the Kubernetes probe default).
CHECK_TIMEOUT = 1.0

#: Seconds between two publications of a process's pool figures.
PUBLISH_SECONDS = 10.0

#: Seconds a readiness result is reused (0: every probe pings).
CACHE_SECONDS = 0.0

#: Largest number of seconds accepted by a ``*_SECONDS``/``*_TIMEOUT`` setting.
MAX_SECONDS = 3600.0
