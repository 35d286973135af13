"""Records every change under an etcd prefix as JSON lines on stdout, each with the system-wide
monotonic time it was seen. Runs as its own process so the test process never mixes its blocking
gRPC calls with an asyncio gRPC loop in another thread (grpcio does not support that reliably).

    python -m tests.chaos.recorder ENDPOINTS PREFIX [FROM_REVISION]
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
import time
from typing import TextIO

from i2v_common.etcd_kv import EtcdKV
from i2v_contract.addresses import parse_endpoints
from i2v_contract.kv import Compacted, KeyValue, KVUnavailable, WatchEvent


def encode(event: WatchEvent, at: float) -> str:
    kv = event.kv
    return json.dumps(
        {
            "at": at,
            "kind": event.kind,
            "key": kv.key,
            "value": base64.b64encode(kv.value).decode(),
            "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision,
            "version": kv.version,
            "lease": kv.lease,
        }
    )


def decode(line: str) -> tuple[float, WatchEvent]:
    data = json.loads(line)
    kv = KeyValue(
        key=data["key"],
        value=base64.b64decode(data["value"]),
        create_revision=data["create_revision"],
        mod_revision=data["mod_revision"],
        version=data["version"],
        lease=data["lease"],
    )
    return data["at"], WatchEvent(data["kind"], kv)


async def record(endpoints: list[str], prefix: str, out: TextIO, from_revision: int = 1) -> None:
    kv = EtcdKV(endpoints)
    next_rev = from_revision
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def watch() -> None:
        nonlocal next_rev
        while True:
            try:
                async for event in kv.watch_prefix(prefix, next_rev):
                    out.write(encode(event, time.monotonic()) + "\n")
                    out.flush()
                    next_rev = event.kv.mod_revision + 1
            except (KVUnavailable, Compacted):
                await asyncio.sleep(0.2)  # etcd away (quorum lost): resume from the next revision

    task = asyncio.create_task(watch())
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await kv.close()


def main(argv: list[str]) -> int:
    endpoints, prefix, *start = argv
    asyncio.run(record(parse_endpoints(endpoints), prefix, sys.stdout, int(start[0]) if start else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
