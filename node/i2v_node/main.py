"""`i2v-node`: serve one model over gRPC until SIGTERM/SIGINT, then drain and exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from i2v_node.config import NodeConfig, parse_args

log = logging.getLogger("i2v_node")


async def serve(config: NodeConfig) -> int:
    from i2v_node.server import NodeServer, StartupError

    try:
        server = NodeServer(config)
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
    await server.stop()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
