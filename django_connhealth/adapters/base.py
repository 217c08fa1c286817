"""What an adapter says about one kind of cache backend.

Sizing, readiness, the checks and the report know nothing of a backend's
settings: they ask its adapter how to size an alias, which pools it has in
this process, what those pools run with and under which name they appear on
the server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from django.core.checks import CheckMessage
    from redis import ConnectionPool, Redis

    from django_connhealth.poolconfig import PoolConfig
    from django_connhealth.sizing import Concurrency


@dataclass(frozen=True)
class SizingPlan:
    """What every alias is sized from: this process's concurrency and naming."""

    concurrency: Concurrency
    headroom: int
    host: str
    #: the whole CACHES setting, for pools that several aliases share
    caches: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class AliasPool:
    """One pool as one alias sees it in this process, and the secrets to keep out of output."""

    alias: str
    url: str
    client: Redis
    secrets: tuple[str, ...] = ()

    @property
    def pool(self) -> ConnectionPool:
        return self.client.connection_pool


class Unpinged(NamedTuple):
    """A Redis-backed alias readiness cannot ping, and why."""

    alias: str
    url: str
    reason: str
    #: its pools cannot even be built, so every use of the cache fails: readiness fails
    broken: bool = False


class Adapter(ABC):
    """One kind of Redis cache backend."""

    @abstractmethod
    def handles(self, config: Mapping[str, Any]) -> bool:
        """Whether this adapter speaks for a CACHES entry."""

    @abstractmethod
    def size(self, alias: str, config: Mapping[str, Any], plan: SizingPlan) -> dict[str, Any]:
        """A copy of ``config`` with the pool settings the user did not set filled in."""

    @abstractmethod
    def is_sized(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` went through :meth:`size`."""

    @abstractmethod
    def pool_name(self, alias: str, config: Mapping[str, Any]) -> str:
        """The alias part of the names of its connections and published records."""

    @abstractmethod
    def pool_host(self, config: Mapping[str, Any]) -> str | None:
        """The host part of those names, when sizing fixed one."""

    @abstractmethod
    def pool_configs(self, config: Mapping[str, Any]) -> list[PoolConfig]:
        """What each of the alias's pools runs with, one per server URL."""

    @abstractmethod
    def alias_pools(self, alias: str, config: Mapping[str, Any]) -> list[AliasPool]:
        """The alias's live pools in this process (built if not yet), one per server URL."""

    @abstractmethod
    def check(self, alias: str, config: Mapping[str, Any]) -> Iterable[CheckMessage]:
        """System checks of one alias's backend-specific settings."""

    def check_caches(self, caches: Mapping[str, Mapping[str, Any]]) -> Iterable[CheckMessage]:
        """System checks across the aliases of ``caches`` (its backend's, not only sized ones).

        None unless the backend shares pools between aliases.
        """
        return ()
