"""How Sésame opens Redis: one server, or a Redis Cluster (docs/decisions/0047).

`SESAME_REDIS_URL` names one server (`redis://host:port/db`, `rediss://` with TLS) or a cluster:
`redis+cluster://[user:password@]host:port[,host:port...]` (`rediss+cluster://` with TLS), the seed nodes
from which redis-py's `RedisCluster` learns the slots. Every adapter takes a `RedisClient`, either kind: the
scripts, reads and pipelines they send are the same, and only the connection differs, so the difference
lives here. What a cluster adds is checked here too: `cluster_state:ok` on every primary at boot and in
health (`check_cluster`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    URL_QUERY_ARGUMENT_PARSERS,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.driver_info import DriverInfo
from redis.exceptions import NoPermissionError, RedisClusterException, RedisError

from sesame.clients.redis_cluster import Cluster
from sesame.clients.redis_packing import c_packed, packed_class
from sesame.server.domain.errors import ConfigurationError, RedisUrlUnusable, StoreUnavailable

_BOOT_TIMEOUT: Final = 2.0  # seconds for each socket wait of the boot's check
RedisClient: TypeAlias = aioredis.Redis | RedisCluster
_CLUSTER_SCHEMES: Final = {"redis+cluster": False, "rediss+cluster": True}  # scheme: TLS
_CLUSTER_NODES: Final = "the nodes the cluster names"  # where a cluster client connects besides its seeds
# The TLS options of a Redis URL that only say where the certificates are, and the two checks `reach` reads.
_TLS_PLACES: Final = frozenset(
    {
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_ca_data",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_cert_reqs",
        "ssl_check_hostname",
    }
)
# The options a Redis URL may carry (`?name=value`): where to connect, who to be, and the certificates. Any
# other is refused as a settings error: redis-py passes names it does not know to the connection, which fails
# at the first command (`?sockettimeout=2`: a traceback; `?redis_connect_func=x`), and some it knows change
# what Sésame relies on: `max_connections=1` held health down for good (decision 0136's pool),
# `decode_responses` or `encoding` broke every read, `?socket_timeout=600` held a boot and the CLI for ten
# minutes on a Redis that did not answer (Sésame bounds every socket wait itself), `protocol` (Sésame reads
# RESP2), `retry_on_error` (outside audits, one option at a time until this list).
_URL_OPTIONS: Final = frozenset(
    {"db", "host", "port", "username", "password", "client_name", "socket_keepalive", "health_check_interval"}
    | _TLS_PLACES
)
# What an outbox's own cluster client keeps of the client it sits beside (see `beside`).
# Connections of a pool (one server) or per node (a cluster): as many as the calls in flight; the server's
# shedding bounds the calls (SESAME_MAX_CONCURRENT_RPCS). redis-py 8 caps both at 100 by default and fails the
# 101st call at once (MaxConnectionsError, answered UNAVAILABLE), where a worker's 100 calls in flight share
# the pool with its health round (the store's probe, the clock watch's TIME, the health note; decision 0136).
_CONNECTIONS: Final = 2**31 - 1
_KEPT: Final = ("username", "password", "socket_connect_timeout", "health_check_interval", "client_name")
# The lines said once each per process (`say_once`).
_SAID: set[str] = set()
_log = logging.getLogger("sesame.redis")
# What each connection tells Redis it is (CLIENT SETINFO), read once: redis-py 8 otherwise reads its own
# version from the installed distributions (importlib.metadata, a scan of sys.path) for every new connection,
# on the event loop, a few ms each time a pool grows under a burst (decision 0052).
_DRIVER: Final = DriverInfo()


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a Redis Cluster (`redis+cluster://` or `rediss+cluster://`). RedisUrlUnusable for
    what is no URL at all (`redis://[::1/0`: a `--redis` option, never checked with the settings)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # its message names the fault, never the URL (which may hold the password)
        raise _unparsed(exc) from None
    if "#" in url:
        # A `#` ends the host part: an unescaped one in a password put the username and the password's
        # start in the messages, read as a host or a seed (an outside audit). Nothing of the URL is quoted.
        raise RedisUrlUnusable("a Redis URL has no `#`: write one in a password as %23")
    return parts.scheme in _CLUSTER_SCHEMES


@dataclass(frozen=True, slots=True)
class Reach:
    """Where a Redis URL leads, read as the client reads it."""

    hosts: tuple[str, ...]  # the host; a cluster's seeds and _CLUSTER_NODES; none for a unix socket
    tls: bool  # rediss://: the link is encrypted
    checked: bool  # and the server's certificate and name are checked: no one between can read or change it


def reach(url: str) -> Reach:
    """Where `url` leads, read with redis-py's own parser, not the URL's look: `redis:///?host=10.9.9.9`
    leads to 10.9.9.9 and `rediss://h/?ssl_cert_reqs=none` accepts any certificate (an outside audit found
    both passing production's check of links in clear). RedisUrlUnusable for what the client refuses too."""
    if is_cluster_url(url):
        nodes, _, tls = _cluster_target(url)
        # A cluster client talks to every node the cluster names, wherever they are, not to its seeds only
        # (seeds on this host passed while the nodes were elsewhere: an audit): never this host's alone.
        return Reach((*(node.host for node in nodes), _CLUSTER_NODES), tls, tls)
    try:
        options = parse_url(url)
    except ValueError as exc:
        raise _unparsed(exc) from None
    kind = options.get("connection_class")
    if kind is UnixDomainSocketConnection:
        return Reach((), tls=False, checked=False)
    tls = kind is SSLConnection
    # What SSLConnection checks by default: the certificate (CERT_OPTIONAL checks it too on a client: the
    # server always shows one), then the name; no TLS option of the URL but those that only say where the
    # certificates are: `ssl_ciphers=aNULL` let a server without a certificate in (an audit).
    certificate = options.get("ssl_cert_reqs", "required") in ("required", "optional")
    name = options.get("ssl_check_hostname", True) is True
    weakened = any(option.startswith("ssl_") and option not in _TLS_PLACES for option in options)
    return Reach((options.get("host", "localhost"),), tls, tls and certificate and name and not weakened)


def connect(url: str, *, timeout: float, retry: Retry | None = None, **options: Any) -> RedisClient:
    """A client on its own connections: `timeout` bounds every socket wait; `retry` (redis-py's default when
    None) says how often a command that failed on the network is sent again; `options` go to redis-py.

    Nothing is sent yet: a wrong host fails at the first command, as StoreUnavailable.
    """
    if retry is not None:
        options["retry"] = retry
    if not is_cluster_url(url):
        options.setdefault("driver_info", _DRIVER)
        try:
            parse_url(url)
            refused = sorted(set(parse_qs(urlsplit(url).query)) - _URL_OPTIONS)
        except ValueError as exc:
            raise _unparsed(exc) from None
        if refused:
            raise RedisUrlUnusable(f"{_named(refused)} (it may set {', '.join(sorted(_URL_OPTIONS))})")
        try:
            client = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                max_connections=_CONNECTIONS,
                **options,
            )
        except ValueError as exc:
            # redis-py's parsing: a port out of range or not a number, a scheme, an option. Its messages name
            # the part at fault, never the whole URL (which may hold the password).
            raise _unparsed(exc) from None
        try:
            # An option redis-py passes on without knowing it (`?sockettimeout=2`) fails where a connection is
            # made: at the first command, a traceback out of the boot (an outside audit). Made once here.
            client.connection_pool.make_connection()  # type: ignore[no-untyped-call]  # redis-py: untyped
        except (TypeError, AttributeError, RedisError, LookupError) as exc:  # an option of the wrong kind
            raise RedisUrlUnusable(f"an option the Redis client does not take: {exc}") from None
        return c_packed(client)  # commands packed in C (decision 0049); `beside` copies the connection class
    nodes, credentials, tls = _cluster_target(url)
    return _cluster(
        startup_nodes=nodes,
        ssl=tls,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        **credentials,
        **options,
    )


def _unparsed(exc: ValueError) -> RedisUrlUnusable:
    """The URL parser's refusal without the value it quotes: `Port could not be cast to integer value as
    'pa'` showed a piece of a password with an unescaped `?` or `/` in it (read as the port)."""
    return RedisUrlUnusable(str(exc).split(" as '", 1)[0])


def _named(refused: list[str]) -> str:
    """The options refused, named when redis-py knows them: another name may be a piece of the password (an
    unescaped `?` in it starts the query)."""
    known = [name for name in refused if name in URL_QUERY_ARGUMENT_PARSERS or name.startswith("ssl_")]
    unknown = len(refused) - len(known)
    named = [*known, *([f"{unknown} option(s) the Redis client does not know"] if unknown else [])]
    return f"an option the URL may not set: {', '.join(named)}"


def beside(client: RedisClient, *, timeout: float) -> RedisClient:
    """A client on connections of its own to the Redis (or cluster) `client` talks to, with `timeout` for
    its socket waits (the outbox's blocking reads hold a connection and wait longer than a script)."""
    if isinstance(client, RedisCluster):
        kwargs = client.get_connection_kwargs()
        kept: dict[str, Any] = {name: kwargs[name] for name in _KEPT if name in kwargs}
        return _cluster(
            # The seeds it was given (or the nodes it found since): a client not used yet knows no node.
            startup_nodes=[
                ClusterNode(node.host, node.port) for node in client.nodes_manager.startup_nodes.values()
            ],
            ssl=issubclass(client.nodes_manager.connection_kwargs["connection_class"], SSLConnection),
            socket_timeout=timeout,
            retry=client.retry,
            **kept,
        )
    options = {**client.connection_pool.connection_kwargs, "socket_timeout": timeout}
    pool = aioredis.ConnectionPool(
        connection_class=client.connection_pool.connection_class, max_connections=_CONNECTIONS, **options
    )
    return aioredis.Redis(connection_pool=pool)


def _cluster(**options: Any) -> RedisCluster:
    """A cluster client whose nodes' connections are the store's class (`packed_class`: a write on a closed
    connection is a ConnectionError, decision 0066; commands packed in C). redis-py 8 takes no connection
    class for a cluster: it makes every node (the seeds now; the nodes CLUSTER SLOTS names and a MOVED's
    target later) from the client's `connection_kwargs`, the dict its nodes manager shares. The client is
    `Cluster`: an ASK followed on one connection, no call cut when the slots are learnt again (0068)."""
    client = Cluster(max_connections=_CONNECTIONS, **options)
    kwargs = client.nodes_manager.connection_kwargs
    kwargs["connection_class"] = packed_class(kwargs["connection_class"])
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = kwargs["connection_class"]
    return client


async def check_cluster(client: RedisClient) -> None:
    """Return when `client` is one server, or a cluster whose every primary says `cluster_state:ok` (all
    16,384 slots served). StoreUnavailable naming the first primary that does not."""
    if not isinstance(client, RedisCluster):
        return
    try:
        await client.initialize()  # learns the slots and nodes once (a client's first command does too)
        for node in client.get_primaries():
            state = (await client.cluster_info(target_nodes=node)).get("cluster_state")
            if state != "ok":
                raise StoreUnavailable(f"Redis Cluster node {node.name} says cluster_state:{state}")
    except (RedisError, RedisClusterException, OSError) as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


async def check_keeps_keys(client: RedisClient) -> None:
    """Return when Redis (every primary of a cluster) evicts no key when full: `maxmemory-policy noeviction`.
    ConfigurationError naming the policy otherwise, said once per policy by an ERROR line.

    An evicted send unit, request id, lease or user is a lost fact: an outside audit's Redis under
    `volatile-ttl` sent 13 codes against a budget of 10 and answered a retried request id with a second
    challenge, and under `allkeys-lru` lost users' records, all while health read SERVING. A Redis whose ACL
    refuses INFO (`-@dangerous`) is not checked (said once)."""
    try:
        if isinstance(client, RedisCluster):
            answers = await client.info("memory", target_nodes=RedisCluster.PRIMARIES)
            infos = [answers] if "maxmemory_policy" in answers else list(answers.values())
        else:
            infos = [await client.info("memory")]
    except NoPermissionError:
        say_once(
            "INFO refused", logging.INFO, "Redis refuses INFO to Sésame: its eviction policy is not checked"
        )
        return
    except (RedisError, RedisClusterException, OSError) as exc:
        raise StoreUnavailable(type(exc).__name__) from exc
    policies = sorted({str(info.get("maxmemory_policy", "noeviction")) for info in infos} - {"noeviction"})
    if policies:
        said = f"Redis evicts keys when full (maxmemory-policy {', '.join(policies)}): set noeviction"
        say_once(said, logging.ERROR, f"{said}; a budget, a request id or a user evicted is a fact lost")
        raise ConfigurationError(said)


def say_once(key: str, level: int, line: str) -> None:
    """Log `line` at `level` the first time this process is told `key`."""
    if key not in _SAID:
        _SAID.add(key)
        _log.log(level, "%s", line)


async def ready(url: str) -> None:
    """At boot: return when `url` is one server (its first command tells), or a cluster that says
    `cluster_state:ok` on every primary; StoreUnavailable otherwise (a connection for the check only)."""
    if not is_cluster_url(url):
        return
    client = connect(url, timeout=_BOOT_TIMEOUT)
    try:
        await check_cluster(client)
    finally:
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await client.aclose()


def _cluster_target(url: str) -> tuple[list[ClusterNode], dict[str, Any], bool]:
    """The seed nodes, credentials and TLS flag of a `redis+cluster://` URL; RedisUrlUnusable otherwise."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if parts.path not in ("", "/") or parts.query:
        raise RedisUrlUnusable("a redis+cluster:// URL has no database or options: host:port[,host:port]")
    nodes = [_node(seed) for seed in hosts.split(",")]
    credentials: dict[str, Any] = {}
    if userinfo:
        username, has_password, password = userinfo.partition(":")
        if username:
            credentials["username"] = unquote(username)
        if has_password:
            credentials["password"] = unquote(password)
    return nodes, credentials, _CLUSTER_SCHEMES[parts.scheme]


def _node(seed: str) -> ClusterNode:
    host, _, port = seed.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        # The seeds come after the '@': the password is not in one.
        raise RedisUrlUnusable(f"a Redis Cluster seed is host:port, not {seed!r}")
    return ClusterNode(host.strip("[]"), int(port))
