"""Fill etcd with real-shaped job records: N finished jobs and M queued ones, fast.

Run from the repository root:
    .venv/bin/python benchmarks/fill_etcd.py --finished 100000 --queued 1000 [--etcd 127.0.0.1:2379]

Without --etcd it starts a throw-away single-member etcd (tests/etcd_cluster.py), fills it and
stops it; with --etcd it fills that cluster under --prefix and leaves the records there (for a
coordinator or a benchmark to start against). Records come from the coordinator's own codecs
(records.encode_job of a JobRecord holding a jobs.JobView and the normalised, stored request), the
node's ResultRecord and the project's key schema, written in txns of --batch puts (etcd allows 128
ops per txn), --concurrency txns in flight.

Where a finished job lives is one function, `finished_entries`, per --layout:
- history (default, the current schema; docs/architecture.md, etcd data model):
  history/{finished_us:016d}-{id} holds the job record with the accepted result embedded, done/{id}
  points at it;
- jobs (the schema before it): jobs/{id} holds the final record, results/{id}/1 the node's result.
Queued jobs are jobs/{id} in both.

Prints the fill rate (records and puts per second) and etcd's db size (maintenance status dbSize,
which is what etcd_mvcc_db_total_size_in_bytes on /metrics reports).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from i2v_client import build_request
from i2v_common.etcd_kv import EtcdKV
from i2v_contract import memory, states
from i2v_contract.keys import DEFAULT_PREFIX, DoneRecord, Keys, ResultRecord
from i2v_contract.kv import KV, KeyValue, Put
from i2v_contract.limits import DEFAULT_LIMITS, normalize_request
from i2v_contract.wire import common_pb2
from i2v_coordinator import jobs
from i2v_coordinator.admission import stored_request
from i2v_coordinator.records import JobRecord, decode_result, encode_job, request_digest
from tests.etcd_cluster import EtcdCluster

LAYOUTS = ("history", "jobs")
ARTIFACTS = "file:///var/lib/i2v/artifacts"
# What users ask for, cycled: (width, height, frames, steps).
SHAPES = ((512, 512, 16, 30), (704, 448, 16, 50), (1024, 576, 24, 30), (256, 256, 8, 20))
# The client's image is not in the record (input_uri points at the store), so any bytes do.
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(64)


@dataclass(frozen=True)
class FillStats:
    finished: int
    queued: int
    puts: int
    txns: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return (self.finished + self.queued) / self.seconds if self.seconds > 0 else 0.0

    @property
    def puts_per_s(self) -> float:
        return self.puts / self.seconds if self.seconds > 0 else 0.0


def _request(i: int) -> tuple[common_pb2.GenerationRequest, str]:
    """(the request as stored, the digest of the client's original) for job number i."""
    width, height, frames, steps = SHAPES[i % len(SHAPES)]
    original = build_request(
        IMAGE,
        prompt=f"a slow pan over a harbour at dusk, shot {i}",
        width=width,
        height=height,
        frames=frames,
        steps=steps,
        fps=8,
        seed=i,
    )
    norm = normalize_request(original, DEFAULT_LIMITS, random_seed=lambda: i)
    digest = request_digest(original)
    return stored_request(norm, f"{ARTIFACTS}/jobs/{_job_id(i)}/input-{digest[:16]}.png"), digest


def _job_id(i: int) -> str:
    return f"fill-{i:09d}"


def queued_record(i: int, now: float) -> JobRecord:
    request, digest = _request(i)
    need = memory.required_bytes(request.width, request.height, request.frames)
    tier = memory.required_tier(request.width, request.height, request.frames)
    view = jobs.new_job(_job_id(i), need, tier, request.model, now - 60)
    return JobRecord(view, request, request.image_uri, digest)


def finished_record(i: int, now: float, span_s: float, total: int) -> tuple[JobRecord, ResultRecord]:
    """A SUCCEEDED job, finish times spread evenly over the `span_s` before `now`, and its result."""
    queued = queued_record(i, now)
    finished_at = now - span_s + span_s * i / max(1, total)
    denoise = 20.0 + i % 40
    uri = f"{ARTIFACTS}/jobs/{queued.job_id}/attempt-1.mp4"
    view = dataclasses.replace(
        queued.view,
        state=states.SUCCEEDED,
        node_id=f"gpu-node-{i % 64:02d}",
        node_tier=common_pb2.TIER_24_40,
        epoch=1 + i // 10_000,
        created_at=finished_at - denoise - 8,
        assigned_at=finished_at - denoise - 6,
        started_at=finished_at - denoise - 5,
        finished_at=finished_at,
        artifact_uri=uri,
        result_attempt=1,
    )
    req = queued.request
    produced = common_pb2.Result(
        artifact_uri=uri,
        sha256=hashlib.sha256(uri.encode()).hexdigest(),
        profile="resident-fp16",
        timings=common_pb2.Timings(
            encode_s=1.2, denoise_s=denoise, decode_s=3.1, video_s=0.4, total_s=denoise + 4.7
        ),
        peak_bytes=18 * 1024**3,
        width=req.width,
        height=req.height,
        frames=req.frames,
        fps=req.fps,
        steps=req.steps,
        seed=req.seed,
        metadata={"dtype": "float16", "model": "ali-vilab/i2vgen-xl", "tier": "24-40GB"},
    )
    result = ResultRecord("OK", result=produced)
    return dataclasses.replace(queued, view=view), result


def _result_message(keys: Keys, job_id: str, attempt: int, result: ResultRecord) -> common_pb2.Result:
    """The node's result as the Result message the history record embeds: read back through the
    leader's own decoder of results/ records, as a finishing txn does."""
    kv = KeyValue(keys.result(job_id, attempt), result.to_json(), 1, 1, 1, 0)
    return decode_result(kv, keys).result


def finished_entries(
    keys: Keys, record: JobRecord, result: ResultRecord, layout: str
) -> list[tuple[str, bytes]]:
    """The keys and values of one finished job under `layout` (the one place the schema lives)."""
    view = record.view
    if layout == "jobs":
        return [
            (keys.job(view.job_id), encode_job(record)),
            (keys.result(view.job_id, view.result_attempt), result.to_json()),
        ]
    if layout != "history":
        raise ValueError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    entry = keys.history_entry(view.finished_at, view.job_id)
    finished = dataclasses.replace(
        record, result=_result_message(keys, view.job_id, view.result_attempt, result)
    )
    return [
        (entry, encode_job(finished)),
        (keys.done_of(view.job_id), DoneRecord(entry, view.finished_at).to_json()),
    ]


def entries(
    keys: Keys, finished: int, queued: int, layout: str, now: float, span_s: float
) -> Iterator[tuple[str, bytes]]:
    for i in range(finished):
        record, result = finished_record(i, now, span_s, finished)
        yield from finished_entries(keys, record, result, layout)
    for i in range(finished, finished + queued):
        record = queued_record(i, now)
        yield keys.job(record.job_id), encode_job(record)


async def fill(
    kv: KV,
    keys: Keys,
    finished: int,
    queued: int,
    *,
    layout: str = "history",
    batch: int = 100,
    concurrency: int = 4,
    span_s: float = 7 * 86400.0,
    now: float | None = None,
) -> FillStats:
    """Write the records in unconditional txns of `batch` puts, `concurrency` in flight."""
    if not 1 <= batch <= 128:
        raise ValueError(f"batch {batch}: etcd takes at most 128 operations per txn (--max-txn-ops)")
    stamp = time.time() if now is None else now
    pending: set[asyncio.Task[object]] = set()
    puts = txns = 0
    started = time.perf_counter()
    ops: list[Put] = []

    async def flush() -> None:
        nonlocal txns
        if len(pending) >= concurrency:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.difference_update(done)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(kv.txn([], list(ops))))
        ops.clear()
        txns += 1

    for key, value in entries(keys, finished, queued, layout, stamp, span_s):
        ops.append(Put(key, value))
        puts += 1
        if len(ops) == batch:
            await flush()
    if ops:
        await flush()
    for task in asyncio.as_completed(pending):
        await task
    return FillStats(finished, queued, puts, txns, time.perf_counter() - started)


def db_size(endpoint: str) -> int:
    """etcd's backend db size in bytes (maintenance status; the same figure as /metrics)."""
    request = urllib.request.Request(f"http://{endpoint}/v3/maintenance/status", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as resp:
        return int(json.loads(resp.read())["dbSize"])


async def run(args: argparse.Namespace, endpoints: list[str]) -> None:
    kv = EtcdKV(endpoints)
    try:
        before = db_size(endpoints[0])
        stats = await fill(
            kv, Keys(args.prefix), args.finished, args.queued, layout=args.layout, batch=args.batch,
            concurrency=args.concurrency,
        )  # fmt: skip
    finally:
        await kv.close()
    after = db_size(endpoints[0])
    print(
        f"filled {stats.finished} finished + {stats.queued} queued jobs (layout {args.layout}) under "
        f"{args.prefix} in {stats.seconds:.1f} s: {stats.records_per_s:.0f} jobs/s, "
        f"{stats.puts_per_s:.0f} puts/s "
        f"({stats.txns} txns of <= {args.batch} puts, {args.concurrency} in flight)"
    )
    print(
        f"etcd db size: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after "
        f"({(after - before) / max(1, stats.puts):.0f} bytes per put, before compaction/defrag)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--finished", type=int, default=10_000, help="finished (SUCCEEDED) jobs")
    parser.add_argument("--queued", type=int, default=100, help="queued jobs")
    parser.add_argument("--etcd", default="", help="endpoints host:port,...; default: a throw-away etcd")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--layout", choices=LAYOUTS, default="history")
    parser.add_argument("--batch", type=int, default=100, help="puts per txn (<= 128)")
    parser.add_argument("--concurrency", type=int, default=4, help="txns in flight")
    args = parser.parse_args()
    if args.finished < 0 or args.queued < 0:
        parser.error("--finished and --queued must be >= 0")
    if args.etcd:
        asyncio.run(run(args, args.etcd.split(",")))
        return 0
    with tempfile.TemporaryDirectory(prefix="i2v-fill-") as tmp:
        etcd = EtcdCluster(1, Path(tmp)).start()
        try:
            asyncio.run(run(args, etcd.endpoints))
        finally:
            etcd.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
