"""A node process's place in the cluster: Membership + ClusterHooks wired to its servicer.

`join_cluster` first agrees with the coordinators on the artifact store (it waits for them to
publish coord/store, then checks the store's id and a canary round trip; nothing is registered on
a mismatch), then registers nodes/{node_id} (after the gRPC server is bound, so the advertised
address answers), makes every dispatched job go through the fenced claim, re-publishes the node's
state whenever the servicer reports a change, and re-probes memory about once a second while idle
so a free-VRAM drop reaches etcd (and routing) without waiting for a job. `ClusterNode.leave` is
the shutdown half: pending result writes first, then the lease is revoked so the key (and any
claim) disappears at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from i2v_common.artifacts import ArtifactStore
from i2v_common.store_identity import agree
from i2v_contract.keys import Keys
from i2v_contract.kv import KV
from i2v_contract.version import package_version
from i2v_node.claims import ClusterHooks
from i2v_node.gpu import ProbeError
from i2v_node.membership import Membership, NodeInfo
from i2v_node.publishing import NodeState
from i2v_node.servicer import NodeServicer

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0


def node_state(servicer: NodeServicer) -> NodeState:
    """What the node publishes now: busy while it runs a job or is not serving (loading, draining)."""
    reading = servicer.reading
    engine = servicer.engine
    return NodeState(
        busy=servicer.job is not None or not servicer.serving,
        free_bytes=reading.free_bytes if reading is not None else 0,
        total_bytes=reading.total_bytes if reading is not None else 0,
        tier=servicer.tier,
        serving=servicer.serving,
        arch=engine.arch if engine is not None else None,
    )


class ClusterNode:
    def __init__(self, servicer: NodeServicer, membership: Membership, hooks: ClusterHooks) -> None:
        self.servicer = servicer
        self.membership = membership
        self.hooks = hooks
        self._prober: asyncio.Task[None] | None = None

    def publish(self) -> None:
        self.membership.publish(node_state(self.servicer))

    def start_probing(self, interval_s: float = PROBE_INTERVAL_S) -> None:
        loop = asyncio.get_running_loop()
        self._prober = loop.create_task(self._probe_loop(interval_s), name="memory-probe")

    async def _probe_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self.servicer.job is not None:
                continue  # a running job's own use is not what routing should see
            try:
                await self.servicer.probe()  # publishes through the servicer's listener
            except ProbeError as err:
                log.warning("memory probe failed (%s); keeping the last published figures", err)

    async def leave(self) -> None:
        """After the drain: let result writes land, then revoke the lease (the key goes at once)."""
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        await self.hooks.drain()
        await self.membership.stop()


async def join_cluster(
    servicer: NodeServicer,
    kv: KV,
    keys: Keys,
    store: ArtifactStore,
    *,
    node_id: str,
    addr: str,
    model: str,
    lease_ttl: float,
    store_location: str,
) -> ClusterNode:
    """Register the node; raises store_identity.StoreMismatch, membership.DuplicateNode or
    kv.KVUnavailable (nothing registered)."""
    kv = servicer.metrics.etcd_kv(kv)  # every etcd call of the node's cluster parts is measured
    await agree(kv, keys, store, store_location, node_id)
    reading = await servicer.probe()
    info = NodeInfo(
        addr=addr,
        gpu=reading.name if reading.accelerator else "",
        models=(model,),
        version=package_version(),
    )
    membership = Membership(kv, keys, node_id, info, lease_ttl=lease_ttl)
    hooks = ClusterHooks(membership, store)
    # Hooks first: from here no dispatched job can reach the engine without its claim.
    servicer.hooks = hooks
    await membership.start(node_state(servicer))
    node = ClusterNode(servicer, membership, hooks)
    servicer.add_listener(node.publish)
    node.publish()  # the model may have finished loading while this node registered
    node.start_probing()
    log.info(
        "node %s joined the cluster as %s (lease ttl %g s, keys under %s)",
        node_id,
        addr,
        lease_ttl,
        keys.prefix,
    )
    return node
