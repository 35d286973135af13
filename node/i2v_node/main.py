"""`i2v-node`: serve one model over gRPC until SIGTERM/SIGINT, then drain and exit 0.

With --etcd it also joins the cluster (after binding, while the model loads): it waits for a
coordinator to publish the artifact store identity, and a store mismatch or a duplicate node id
exits 2 without registering. Shutdown order: drain (published as busy) -> pending result writes ->
revoke the lease (nodes/{id} disappears at once) -> stop gRPC -> close etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from i2v_common.artifacts import ArtifactError, ArtifactStore, open_store
from i2v_common.etcd_kv import EtcdKV
from i2v_common.logs import setup_logging
from i2v_common.store_identity import StoreMismatch
from i2v_contract.addresses import advertise
from i2v_contract.keys import Keys
from i2v_contract.kv import KV, KVUnavailable
from i2v_node.cluster import join_cluster
from i2v_node.config import NodeConfig, parse_args
from i2v_node.membership import DuplicateNode
from i2v_node.server import NodeServer, StartupError

log = logging.getLogger("i2v_node")


class Leaver(Protocol):
    async def leave(self) -> None: ...


@dataclass(frozen=True)
class Parts:
    """How serve() makes the server, the etcd client and the cluster membership (tests pass fakes)."""

    server: Callable[..., NodeServer] = NodeServer
    etcd: Callable[..., KV] = EtcdKV  # (endpoints, security=EtcdSecurity)
    join: Callable[..., Coroutine[Any, Any, Leaver]] = join_cluster


async def serve(config: NodeConfig, parts: Parts = Parts()) -> int:
    """Run the node until SIGTERM/SIGINT: 0 after a clean stop, 1 when the model cannot load, 2 when
    the node cannot start or join its cluster."""
    stop = asyncio.Event()
    try:
        async with contextlib.AsyncExitStack() as cleanup:
            return await _run(config, stop, cleanup, parts)
    except StartupError as err:
        log.error("%s", err)
        return 2


async def _run(
    config: NodeConfig, stop: asyncio.Event, cleanup: contextlib.AsyncExitStack, parts: Parts
) -> int:
    """Open the parts in order; each registers its undo as it comes up, and the exit stack undoes
    them in reverse: drain, leave the cluster, stop gRPC, close etcd."""
    store = _open_store(config)
    kv = parts.etcd(config.etcd, security=config.etcd_security) if config.etcd else None
    if kv is not None:
        log.info("etcd %s: %s", ",".join(config.etcd), config.etcd_security.describe())
        cleanup.push_async_callback(kv.close)
    server = parts.server(config, artifacts=store)
    await server.start()
    cleanup.push_async_callback(server.close)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    load = asyncio.create_task(server.load(), name="load-model")
    cleanup.push_async_callback(_cancel, load)
    if kv is not None:
        assert store is not None  # parse_args requires --artifacts with --etcd
        joined = await _join(config, server, kv, store, stop, parts.join)
        if isinstance(joined, int):
            return joined
        cleanup.push_async_callback(joined.leave)
    cleanup.push_async_callback(server.drain)
    code = await _loaded(load, stop)
    await stop.wait()
    log.info("stop requested: draining (grace %g s)", config.drain_grace_seconds)
    return code


def _open_store(config: NodeConfig) -> ArtifactStore | None:
    if not config.artifacts:
        return None
    try:
        return open_store(config.artifacts)
    except (ArtifactError, OSError) as err:
        raise StartupError(f"cannot open artifact store {config.artifacts}: {err}") from None


async def _join(
    config: NodeConfig,
    server: NodeServer,
    kv: KV,
    store: ArtifactStore,
    stop: asyncio.Event,
    join: Callable[..., Coroutine[Any, Any, Leaver]],
) -> Leaver | int:
    """Join the cluster while the model loads: the ClusterNode, or the exit code when a stop came
    first (0) or the cluster refused the node (2; nothing registered)."""
    joining = asyncio.create_task(
        join(
            server.servicer,
            kv,
            Keys(config.prefix),
            store,
            node_id=config.node_id,
            addr=config.advertise or advertise(server.address, None, socket.gethostname()),
            model=config.model,
            lease_ttl=config.lease_ttl,
            store_location=config.artifacts,
        )
    )
    if not await _first(joining, stop):
        log.info("stop requested while joining the cluster; leaving without registering")
        await _cancel(joining)
        return 0
    try:
        return joining.result()
    except (DuplicateNode, KVUnavailable, StoreMismatch) as err:
        log.error("cannot join the cluster at %s: %s", ",".join(config.etcd), err)
        return 2


async def _loaded(load: asyncio.Task[None], stop: asyncio.Event) -> int:
    """Wait for the model or a stop: 0, or 1 when the model cannot load (the node then stops)."""
    if not await _first(load, stop):
        log.info("stop requested while loading; not waiting for the load to finish")
        load.cancel()
        return 0
    try:
        load.result()
    except StartupError as err:
        log.error("%s", err)
        stop.set()
        return 1
    return 0


async def _first(task: asyncio.Task[Any], stop: asyncio.Event) -> bool:
    """Wait for `task` or `stop`, whichever comes first: True if the task is done."""
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    return task.done()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    setup_logging(config.log_level)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
