"""Artifact store agreement: every coordinator and node must use the same artifact store.

The first coordinator writes a random id into the store itself (`STORE_ID_NAME`, create-if-absent)
and publishes it with the store's URI at coord/store (create-if-absent, no lease). Every later
coordinator and every node reads that record, reads the id object through its OWN store and
refuses to start on a mismatch; a node also proves it can write and read back a canary object.
The comparison is `mismatch` (pure); the rest is the I/O both processes share.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable

from i2v_common.artifacts import ArtifactError, ArtifactMissing, ArtifactStore
from i2v_contract.keys import Keys, StoreRecord
from i2v_contract.kv import KV, Compare, Put

log = logging.getLogger(__name__)

STORE_ID_NAME = "cluster/store-id"
WAIT_LOG_EVERY_S = 5.0


class StoreMismatch(Exception):
    """This process's artifact store is not the cluster's (or is not usable); the message says which."""


def canary_name(node_id: str) -> str:
    return "cluster/canary-" + re.sub(r"[^A-Za-z0-9._-]", "_", node_id)[:100]


def mismatch(published: StoreRecord, found_id: str | None, location: str) -> str | None:
    """Why the store at `location`, holding `found_id` (None: no id), is not the cluster's; None if it is."""
    if found_id == published.id:
        return None
    holds = f"holds store id {found_id}" if found_id is not None else "holds no store id"
    return (
        f"artifact store mismatch: --artifacts {location} {holds} but the cluster's coordinators use "
        f"{published.id} at URI {published.uri}; give this process the same store (if the cluster's "
        "store was deliberately replaced, delete coord/store in etcd and restart the coordinators)"
    )


def read_id(store: ArtifactStore) -> str | None:
    """The id object in `store`, None when absent; ArtifactError when the store cannot be read."""
    try:
        return store.get(store.uri_for(STORE_ID_NAME)).decode().strip()
    except ArtifactMissing:
        return None


async def publish(kv: KV, keys: Keys, store: ArtifactStore, location: str) -> StoreRecord:
    """A coordinator's start: adopt or create the cluster's store identity; StoreMismatch if ours differs.

    Raises KVUnavailable while etcd does not answer (the caller retries).
    """
    while True:
        existing = await kv.get(keys.store)
        try:
            if existing is not None:
                record = StoreRecord.from_json(existing.value)
                found = await asyncio.to_thread(read_id, store)
                if (why := mismatch(record, found, location)) is not None:
                    raise StoreMismatch(why)
                return record
            # The store is written first and exclusively, so racing first coordinators agree on one id.
            await asyncio.to_thread(store.create, STORE_ID_NAME, secrets.token_hex(16).encode())
            found = await asyncio.to_thread(read_id, store)
        except (ArtifactError, OSError, ValueError) as err:
            raise StoreMismatch(f"cannot check artifact store {location}: {err}") from None
        assert found is not None
        record = StoreRecord(id=found, uri=store.root_url)
        done = await kv.txn([Compare(keys.store, "create", "==", 0)], [Put(keys.store, record.to_json())])
        if done.succeeded:
            log.info("published artifact store id %s at %s in %s", record.id, record.uri, keys.store)
            return record


async def agree(
    kv: KV,
    keys: Keys,
    store: ArtifactStore,
    location: str,
    node_id: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    poll_s: float = 0.5,
) -> StoreRecord:
    """A node's start: wait for coord/store, then check the id and a canary round trip.

    Raises StoreMismatch (do not register) or KVUnavailable.
    """
    waited, next_log = 0.0, 0.0
    while (existing := await kv.get(keys.store)) is None:
        if waited >= next_log:
            next_log += WAIT_LOG_EVERY_S
            log.info(
                "waiting for a coordinator to publish the artifact store identity at %s (%.0f s so far)",
                keys.store,
                waited,
            )
        await sleep(poll_s)
        waited += poll_s
    try:
        record = StoreRecord.from_json(existing.value)
    except ValueError as err:
        raise StoreMismatch(f"{keys.store} in etcd is unreadable: {err}") from None
    canary = secrets.token_hex(8).encode()
    try:
        found = await asyncio.to_thread(read_id, store)
        if (why := mismatch(record, found, location)) is not None:
            raise StoreMismatch(why)
        uri = await asyncio.to_thread(store.put, canary_name(node_id), canary)
        back = await asyncio.to_thread(store.get, uri)
    except (ArtifactError, OSError) as err:
        raise StoreMismatch(
            f"artifact store {location} is not usable by node {node_id}: {err}; "
            "check it is mounted and writable here"
        ) from None
    if back != canary:
        raise StoreMismatch(
            f"artifact store {location} returned other bytes than node {node_id} wrote to {uri}; "
            "check the store is not a stale cache"
        )
    log.info("artifact store %s agrees with the cluster (id %s, canary %s)", location, record.id, uri)
    return record
