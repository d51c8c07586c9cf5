"""Sésame's Redis Cluster client: redis-py's `RedisCluster` with two changes for a slot on the move
(docs/decisions/0068), and a third for a node that fails (0162).

1. **An ASK is followed with ASKING and the command on one connection.** redis-py 8.1 sends the two through
   the node's pool one after the other; with more than one connection to the node, the command goes on
   another connection than ASKING, the node answers MOVED back, and the call runs out of tries. A *script*
   is not sent on an ASK at all: the script would run on the importing node with the keys it reaches
   without declaring them (a journal's feed, a user read from a challenge) still on the migrating one, and
   write them there (a key then on both nodes: the migration's MIGRATE fails BUSYKEY). It is refused, not run
   (`ResponseError MIGRATING`, as the scripts' own guard answers on the migrating node: `Scripts`).
2. **Learning the slots again closes no connection a call is using.** On a CLUSTERDOWN and at every fifth
   MOVED, redis-py closes every connection of every node (`aclose`) from inside the call that met it: the
   calls in flight on those connections fail, and a script among them may have run (its reply lost, never
   sent again: decision 0063). Here the client is only told to learn the slots again before its next
   command: its `initialize` marks every connection to be made again once its current command is done. And
   that learning is not stopped half-way by the cancelled call that started it (its failure path closes
   every connection too).
3. **A pipeline that could not reach a node has the slots learnt again.** redis-py's cluster pipeline, sent
   without retries (a script is never sent twice), raises a dead node's ConnectionError, or answers it for
   each of that node's calls when asked not to raise, and never learns the slots again: after a primary
   failed over to its replica, every later pipeline went to the dead node (decision 0162). Every pipeline
   of this client marks the slots to be learnt again before the next command, as a single command does.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Final

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

# Set while redis-py's cluster client runs one command (its redirect loop): what it does there on its own
# (an ASK's node, a close to learn the slots again) is told apart from what its caller asks.
_IN_COMMAND: Final = contextvars.ContextVar("sesame_cluster_in_command", default=False)
_SCRIPTS: Final = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
# What a script refused on an ASK answers: what one on a migrating node does (`lua/_moving_slot.lua`).
MIGRATING: Final = "MIGRATING the script's slot is moving to another node; not run"


class Cluster(RedisCluster):
    """redis-py's cluster client, an ASK followed on one connection and no call cut by a layout change."""

    async def _execute_command(self, target_node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        token = _IN_COMMAND.set(True)
        try:
            return await super()._execute_command(target_node, *args, **kwargs)
        finally:
            _IN_COMMAND.reset(token)

    def get_node(
        self, host: str | None = None, port: int | None = None, node_name: str | None = None
    ) -> ClusterNode | None:
        """The node, as any caller gets it; inside a command, where redis-py asks for a node by name only to
        follow an ASK there, the node that sends ASKING in front of the command on its connection."""
        node = super().get_node(host, port, node_name)
        if node is None or not _IN_COMMAND.get():
            return node
        return _Asked.of(node)

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        """Learn the slots, for every caller waiting on it, to the end: redis-py closes every connection when
        its learning fails, a caller cancelled during it too (its deadline), and the calls in flight with
        them. A cancelled caller leaves; the learning goes on. Nothing to learn (the usual case, a pipeline's
        entry): no task."""
        if not self._initialize:
            return self
        learning = asyncio.ensure_future(super().initialize(*args, **kwargs))
        learning.add_done_callback(_seen)
        await asyncio.shield(learning)
        return self

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        """redis-py's pipeline, which has the slots learnt again when it could not reach a node (see 3.)."""
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")  # as redis-py's
        # mypy: `_event_dispatcher`, an attribute redis-py sets in __init__, reads as abstract.
        return _Pipeline(self, transaction)  # type: ignore[abstract]

    async def aclose(self) -> None:
        """Close every connection; inside a command (redis-py learning the slots again after a CLUSTERDOWN
        or its fifth MOVED), only learn the slots again before the next command, closing nothing in use."""
        if _IN_COMMAND.get():
            self._initialize = True  # `initialize` marks every connection to be made again, once free
            return
        await super().aclose()


def _seen(learning: asyncio.Future[RedisCluster]) -> None:
    """A learning no caller waits for any more: its failure is the next command's, not an unread one."""
    if not learning.cancelled():
        learning.exception()


class _Pipeline(ClusterPipeline):
    """A cluster pipeline whose failure to reach a node, raised or answered, has the slots learnt again."""

    async def execute(
        self,
        raise_on_error: bool = True,  # noqa: FBT001, FBT002 (redis-py's signature)
        allow_redirections: bool = True,  # noqa: FBT001, FBT002
    ) -> list[Any]:
        try:
            replies = await super().execute(raise_on_error, allow_redirections)
        except RedisCluster.ERRORS_ALLOW_RETRY:
            self.cluster_client._initialize = True  # noqa: SLF001 (redis-py's own flag for it: no public way)
            raise
        if any(isinstance(reply, RedisCluster.ERRORS_ALLOW_RETRY) for reply in replies):
            self.cluster_client._initialize = True  # noqa: SLF001
        return replies


class _Asked(ClusterNode):
    """A node as redis-py's ASK branch uses it (`ASKING`, then the command): the same pool as the node, and
    ASKING written in front of the command on the command's own connection."""

    __slots__ = ()

    @classmethod
    def of(cls, node: ClusterNode) -> _Asked:
        """A view of `node`: its pool, settings and name (the same lists and queue, not copies)."""
        asked = cls.__new__(cls)
        for name in ClusterNode.__slots__:
            if hasattr(node, name):
                setattr(asked, name, getattr(node, name))
        return asked

    def __del__(self, *_: Any) -> None:
        """Nothing: the connections are the node's, which warns about them if need be."""

    async def execute_command(self, *args: Any, asking: bool = False, **kwargs: Any) -> Any:  # noqa: ARG002
        if len(args) == 1 and str(args[0]).upper() == "ASKING":
            return True  # written with the command it is for, below
        if str(args[0]).upper() in _SCRIPTS:
            raise ResponseError(MIGRATING)
        connection = self.acquire_connection()
        try:
            await self.disconnect_if_needed(connection)
            await connection.send_packed_command(connection.pack_commands([("ASKING",), args]))
            try:
                await connection.read_response()  # ASKING's OK
            except ResponseError:
                await connection.disconnect()  # the command's reply is still to come: never read
                raise
            return await self.parse_response(connection, args[0], **kwargs)
        finally:
            try:
                await self.disconnect_if_needed(connection)
            finally:
                self.release(connection)
