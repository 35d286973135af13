"""`i2v-node`: serve one model over gRPC until SIGTERM/SIGINT, then drain and exit 0.

With --etcd it also joins the cluster (after binding, while the model loads): it waits for a
coordinator to publish the artifact store identity, and a store mismatch or a duplicate node id
exits 2 without registering. Shutdown order: drain (published as busy) -> pending result writes ->
revoke the lease (nodes/{id} disappears at once) -> stop gRPC -> close etcd.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from i2v_common.etcd_kv import EtcdKV
from i2v_common.logs import setup_logging
from i2v_common.store_identity import StoreMismatch
from i2v_contract.addresses import advertise
from i2v_contract.keys import Keys
from i2v_contract.kv import KVUnavailable
from i2v_node.cluster import ClusterNode, join_cluster
from i2v_node.config import NodeConfig, parse_args
from i2v_node.membership import DuplicateNode

log = logging.getLogger("i2v_node")


async def serve(config: NodeConfig) -> int:
    from i2v_common.artifacts import ArtifactError, ArtifactStore, open_store
    from i2v_node.server import NodeServer, StartupError

    store: ArtifactStore | None = None
    if config.artifacts:
        try:
            store = open_store(config.artifacts)
        except (ArtifactError, OSError) as err:
            log.error("cannot open artifact store %s: %s", config.artifacts, err)
            return 2
    try:
        server = NodeServer(config, artifacts=store)
        await server.start()
    except StartupError as err:
        log.error("%s", err)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    load = asyncio.create_task(server.load())
    stopping = asyncio.create_task(stop.wait())
    cluster: ClusterNode | None = None
    kv: EtcdKV | None = None
    if config.etcd:
        assert store is not None  # parse_args requires --artifacts with --etcd
        kv = EtcdKV(config.etcd)
        joining = asyncio.create_task(
            join_cluster(
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
        await asyncio.wait({joining, stopping}, return_when=asyncio.FIRST_COMPLETED)
        refused: int | None = None
        if not joining.done():
            log.info("stop requested while joining the cluster; leaving without registering")
            joining.cancel()
            await asyncio.gather(joining, return_exceptions=True)
            refused = 0
        else:
            try:
                cluster = joining.result()
            except (DuplicateNode, KVUnavailable, StoreMismatch) as err:
                log.error("cannot join the cluster at %s: %s", ",".join(config.etcd), err)
                refused = 2
        if refused is not None:
            load.cancel()
            await server.close()
            await kv.close()
            return refused
    await asyncio.wait({load, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if load.done():
        try:
            load.result()
        except StartupError as err:
            log.error("%s", err)
            code = 1
            stop.set()
    else:
        log.info("stop requested while loading; not waiting for the load to finish")
        load.cancel()
    await stop.wait()
    log.info("stop requested: draining (grace %g s)", config.drain_grace_seconds)
    await server.drain()
    if cluster is not None:
        await cluster.leave()
    await server.close()
    if kv is not None:
        await kv.close()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    setup_logging(config.log_level)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
