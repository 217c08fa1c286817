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

#: django-redis's own pool class, when OPTIONS names none.
DJANGO_REDIS_POOL_CLASS = "redis.connection.ConnectionPool"

#: The pool class and the connection factory ``sized_caches`` puts in OPTIONS.
POOL_CLASS = "django_connhealth.pool.SizedConnectionPool"
CONNECTION_FACTORY = "django_connhealth.factory.ConnectionFactory"

#: The same for a django-redis Sentinel alias, and django-redis's own two, which
#: its docs have users name: ``sized_caches`` counts them as unset.
SENTINEL_POOL_CLASS = "django_connhealth.sentinel.SizedSentinelPool"
SENTINEL_CONNECTION_FACTORY = "django_connhealth.factory.SentinelConnectionFactory"
DJANGO_REDIS_SENTINEL_POOL_CLASS = "redis.sentinel.SentinelConnectionPool"
DJANGO_REDIS_SENTINEL_FACTORY = "django_redis.pool.SentinelConnectionFactory"

#: The OPTIONS key under which ``sized_caches`` records what it computed.
OPTIONS_KEY = "CONNHEALTH"

#: Prefix of the name every sized connection carries on the server.
CLIENT_NAME_PREFIX = "connhealth"

#: Seconds a readiness answer may take (the Kubernetes probe default).
CHECK_TIMEOUT = 1.0

#: Seconds between two publications of a process's pool figures, and the
#: shortest interval accepted: each publication is a write and a thread per pool.
PUBLISH_SECONDS = 10.0
PUBLISH_MIN_SECONDS = 0.1

#: The heartbeat looks for due publications this many times per interval, and
#: at least every second, at most every this many seconds.
HEARTBEAT_TICKS = 4
HEARTBEAT_MIN_TICK = 0.05

#: Seconds a readiness result is reused (0: every probe pings).
CACHE_SECONDS = 0.0

#: Largest number of seconds accepted by a ``*_SECONDS``/``*_TIMEOUT`` setting.
MAX_SECONDS = 3600.0

#: Seconds between two looks at CONNHEALTH_PUBLISH_SECONDS while publishing is off.
PUBLISH_OFF_RECHECK = 5.0

#: A published record lives this many intervals, so one missed round does not hide a process.
RECORD_TTL_INTERVALS = 3

#: A record older than this many publish intervals is stale: its process is
#: probably gone, and its figures are shown but not counted.
STALE_INTERVALS = 2

#: Seconds an index entry outlives its process's last record (and the index itself lives).
INDEX_SECONDS = 3600

#: Keys of the published records and of their per-alias index.
RECORD_KEY_PREFIX = "connhealth:pool:"
INDEX_KEY_PREFIX = "connhealth:pools:"

#: Seconds a process's exit waits for a publication in flight before removing its record.
UNPUBLISH_WAIT = 1.0

#: Seconds before a readiness answer is due at which the pool checkout gives up,
#: so a saturated pool is reported as such rather than as a probe that did not finish.
CHECKOUT_MARGIN = 0.05

#: Threads per process that ping pools for readiness; a stuck ping holds one
#: until its socket times out.
PROBE_THREADS = 8

#: ``max_connections`` at or above this is no bound (redis-py < 8 defaults to 2**31).
UNBOUNDED = 2**31

#: The smallest and largest ``--watch`` interval of ``manage.py connhealth``.
WATCH_MIN_SECONDS = 0.1
WATCH_MAX_SECONDS = 3600.0

#: Backends and classes named in checks and hints.
DJANGO_BUILTIN_REDIS_BACKEND = "django.core.cache.backends.redis.RedisCache"
PROBE_MIDDLEWARE = "django_connhealth.middleware.ProbeMiddleware"

#: Seconds every request thread may stay busy with none finishing before
#: liveness fails (``CONNHEALTH_WATCHDOG_SECONDS``): gunicorn's own worker timeout.
WATCHDOG_SECONDS = 30.0

#: Where the probe listener binds when ``CONNHEALTH_PROBE_PORT`` is set.
PROBE_HOST = "0.0.0.0"  # probes come from the kubelet, to the pod's IP

#: Pending connections the probe listener's socket queues (a storm of probes).
PROBE_BACKLOG = 1024

#: Bytes and seconds a probe may take to send its request head.
PROBE_HEAD_LIMIT = 8192
PROBE_HEAD_SECONDS = 5.0

#: Seconds a connection may stay checked out before it is reported as a leak
#: (``CONNHEALTH_LEAK_SECONDS``): far beyond any request's use of one.
LEAK_SECONDS = 30.0
