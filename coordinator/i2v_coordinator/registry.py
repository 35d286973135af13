"""The live node table: nodes/ read once at revision R, then watched from R + 1.

Nodes own their keys (registered on their leases), so a key that vanishes is a dead node. A broken
watch resumes from the last revision it delivered (the adapter does that); a compacted history means
events were lost, so the table is rebuilt from a fresh range read. Change callbacks run after every
applied change; they must be cheap and must not raise (the dispatcher only sets an event).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Callable

from i2v_contract.keys import Keys, NodeRecord
from i2v_contract.kv import KV, Compacted, KeyValue, KVUnavailable
from i2v_coordinator.routing import NodeView

log = logging.getLogger(__name__)

_RETRY_S = 0.2


def node_view(node_id: str, record: NodeRecord, registration: int = 0) -> NodeView:
    return NodeView(
        node_id=node_id,
        addr=record.addr,
        tier=record.tier,
        free_bytes=record.free_bytes,
        busy=record.busy,
        model=record.models[0] if record.models else "",
        total_bytes=record.total_bytes,
        registration=registration,
    )


class NodeRegistry:
    def __init__(self, kv: KV, keys: Keys) -> None:
        self._kv = kv
        self._keys = keys
        self._records: dict[str, NodeRecord] = {}
        self._registered: dict[str, int] = {}  # node id -> its key's create revision
        # Kept per node as events arrive; the sorted tuple is rebuilt only when asked for after a
        # change, and re-sorted only when a node joined or left (a busy flip keeps the order).
        self._views: dict[str, NodeView] = {}
        self._order: list[str] = []
        self._snapshot: tuple[NodeView, ...] | None = ()
        self._revision = 0
        self._adverts = 0
        self._callbacks: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def snapshot(self) -> tuple[NodeView, ...]:
        """Live nodes sorted by id."""
        if self._snapshot is None:
            self._snapshot = tuple(self._views[i] for i in self._order)
        return self._snapshot

    def records(self) -> dict[str, NodeRecord]:
        """What each live node published (for ListNodes / ClusterStatus)."""
        return dict(self._records)

    @property
    def revision(self) -> int:
        """The store revision the table reflects."""
        return self._revision

    @property
    def adverts_revision(self) -> int:
        """The revision of the last change to which nodes serve which models with what arch: a cache
        of what records() advertises stays valid while this does not move (busy flips leave it)."""
        return self._adverts

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def start(self) -> None:
        """List once (so the table is usable on return), then keep it current in the background."""
        await self._relist()
        self._task = asyncio.create_task(self._run(), name="node-registry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _relist(self) -> None:
        items, revision = await self._kv.range_prefix(self._keys.nodes)
        records: dict[str, NodeRecord] = {}
        registered: dict[str, int] = {}
        for kv in items:
            decoded = self._decode(kv)
            if decoded is not None:
                records[decoded[0]] = decoded[1]
                registered[decoded[0]] = kv.create_revision
        gone = sorted(set(self._records) - set(records))
        new = sorted(set(records) - set(self._records))
        self._records = records
        self._registered = registered
        self._revision = revision
        self._adverts = revision
        self._views = {i: node_view(i, r, registered[i]) for i, r in records.items()}
        self._order = sorted(records)
        self._publish()
        log.info(
            "node table read at revision %d: %d nodes (new %s, gone %s)", revision, len(records), new, gone
        )

    def _decode(self, kv: KeyValue) -> tuple[str, NodeRecord] | None:
        try:
            node_id = self._keys.id_of(kv.key, self._keys.nodes)
            return node_id, NodeRecord.from_json(kv.value)
        except ValueError as err:
            log.warning("ignoring unreadable node key %s: %s", kv.key, err)
            return None

    def _apply(self, kind: str, kv: KeyValue) -> None:
        self._revision = max(self._revision, kv.mod_revision)
        if kind == "delete":
            node_id = kv.key[len(self._keys.nodes) :]
            self._registered.pop(node_id, None)
            if self._records.pop(node_id, None) is not None:
                log.info("node %s left (its key is gone: lease expired or node stopped)", node_id)
                del self._views[node_id]
                self._order.remove(node_id)
                self._adverts = kv.mod_revision
                self._publish()
            return
        decoded = self._decode(kv)
        if decoded is None:
            return
        node_id, record = decoded
        before = self._records.get(node_id)
        if before is None:
            log.info("node %s joined at %s", node_id, record.addr)
            bisect.insort(self._order, node_id)
        if before is None or (before.models, before.arch) != (record.models, record.arch):
            self._adverts = kv.mod_revision
        self._records[node_id] = record
        self._registered[node_id] = kv.create_revision
        self._views[node_id] = node_view(node_id, record, kv.create_revision)
        self._publish()

    def _publish(self) -> None:
        self._snapshot = None
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("node registry change callback failed")

    async def _run(self) -> None:
        while True:
            try:
                async for ev in self._kv.watch_prefix(self._keys.nodes, self._revision + 1):
                    self._apply(ev.kind, ev.kv)
            except Compacted as err:
                log.warning("node watch: %s; relisting", err)
                await self._relist_until_ok()
            except KVUnavailable as err:
                log.warning("node watch failed (%s); relisting in %.1f s", err, _RETRY_S)
                await asyncio.sleep(_RETRY_S)
                await self._relist_until_ok()

    async def _relist_until_ok(self) -> None:
        while True:
            try:
                await self._relist()
                return
            except KVUnavailable as err:
                log.warning("node relist failed (%s); retrying in %.1f s", err, _RETRY_S)
                await asyncio.sleep(_RETRY_S)
