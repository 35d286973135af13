"""The durable job table in etcd: loading and following it into the mirror (jobtable.py), and the
leader's fenced writes.

`jobs/{id}` holds OPEN jobs only and is written only by the leader, always in a txn guarded by the
leader key's create revision (the epoch) and, for updates, by the job key's last seen mod revision,
so a deposed leader or a stale view can never overwrite newer state. `claims/{id}/{attempt}` and
`results/{id}/{attempt}` are written by nodes; this module only reads them, and deletes them when the
job finishes: the finalising write is one fenced txn that moves the job to
`history/{finished_us:016d}-{id}` (the record with the accepted result embedded), points
`done/{id}` at it and deletes `jobs/{id}`, `claims/{id}/` and `results/{id}/`. So what a new leader
loads is bounded by the open jobs, never by how many jobs the cluster has ever run. Clusters that
ran the schema before history/ still hold finished jobs under jobs/ (results under results/): a new
leader moves those with the same finalising ops, `MOVE_BATCH` per fenced txn (`move_legacy`).

Loading is a paged range read of jobs/, claims/, results/ (yielding to the loop between pages), then
one watch from the first page's revision R + 1; a compacted watch relists. Every change the mirror
reports reaches the `on_change` callbacks. Records use the codec in records.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from i2v_contract.fencing import fence
from i2v_contract.keys import ClaimRecord, DoneRecord, ExpiredRecord, Keys
from i2v_contract.kv import (
    KV,
    Compacted,
    Compare,
    Delete,
    Put,
    WatchEvent,
    count_prefix,
    prefix_end,
    range_pages,
)
from i2v_coordinator.jobs import JobView
from i2v_coordinator.jobtable import Change, ChangeKind, JobTable
from i2v_coordinator.records import JobRecord, decode_job, encode_job
from i2v_coordinator.term import TermOver

log = logging.getLogger(__name__)

LOAD_PAGE = 500  # keys per range read while loading: bounded messages, the loop runs between pages
YIELD_EVERY = 100  # watch events folded in before yielding to the loop (lease keepalives must run)
MOVE_BATCH = 24  # legacy records per move txn: 5 ops each, within etcd's default --max-txn-ops (128)
_WINDOW_US = 60_000_000  # the first window of a newest-first history read: one minute


class Fenced(TermOver):
    """The leader key no longer carries our epoch: this coordinator must stop writing."""


class IdConflict(Exception):
    """A job with this id exists and was submitted with a different request."""


class JobStore:
    def __init__(self, kv: KV, keys: Keys | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.keys = keys or Keys()
        self._clock = clock  # wall clock: only where a newest-first history read starts looking
        self.table = JobTable(self.keys)
        self._listeners: list[Callable[[Change], None]] = []

    def on_change(self, callback: Callable[[Change], None]) -> None:
        self._listeners.append(callback)

    def _emit(self, change: Change | None) -> None:
        if change is None:
            return
        for callback in self._listeners:
            try:
                callback(change)
            except Exception:
                log.exception("job table listener failed on %s", change)

    def fence(self, epoch: int) -> Compare:
        return fence(self.keys, epoch)

    async def load(self) -> int:
        """Page through jobs/, claims/, results/ into the table; returns the first page's revision."""
        started = time.monotonic()
        self.table.clear()
        revision = 0
        for prefix in (self.keys.jobs, self.keys.claims, self.keys.results):
            async for page in range_pages(self.kv, prefix, LOAD_PAGE):
                revision = revision or page.revision
                for kv in page.items:
                    self.table.apply(WatchEvent("put", kv))
        self.table.revision = revision
        log.info(
            "job table loaded at revision %d in %.3fs: %d open jobs, %d claims, %d results",
            revision,
            time.monotonic() - started,
            len(self.table.jobs),
            len(self.table.claims),
            len(self.table.results),
        )
        self._emit(Change(ChangeKind.RELIST))
        return revision

    async def follow(self) -> None:
        """Watch from the table's revision + 1 forever; relist on compaction.

        One watch over the whole prefix, because etcd orders events only within one watch and the
        dispatcher needs a node's result before that node's claim disappearing; keys outside the
        open prefixes are skipped before any decoding, and the loop runs every YIELD_EVERY events.
        """
        open_prefixes = (self.keys.jobs, self.keys.claims, self.keys.results)
        while True:
            seen = 0
            try:
                async for event in self.kv.watch_prefix(self.keys.prefix, self.table.revision + 1):
                    seen += 1
                    if seen % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    if event.kv.key.startswith(open_prefixes):
                        self._emit(self.table.apply(event))
            except Compacted as exc:
                log.warning("job watch compacted (%s): relisting", exc)
                await self.load()

    async def _fenced_txn(self, epoch: int, compares: list[Compare], ops: list[Put | Delete]) -> int | None:
        """Commit `ops` under the epoch fence; the new revision, None on a lost compare."""
        result = await self.kv.txn([self.fence(epoch), *compares], ops)
        if result.succeeded:
            return result.revision
        leader = await self.kv.get(self.keys.leader)
        if leader is None or leader.create_revision != epoch:
            raise Fenced(f"epoch {epoch} is over (leader key {'gone' if leader is None else 'replaced'})")
        return None

    async def submit(self, record: JobRecord, epoch: int) -> tuple[JobRecord, bool]:
        """Create the job if its id is free (neither open nor finished); an existing job with the
        same digest is returned as is."""
        key = self.keys.job(record.job_id)
        absent = [
            Compare(key, "create", "==", 0),
            Compare(self.keys.done_of(record.job_id), "create", "==", 0),
        ]
        revision = await self._fenced_txn(epoch, absent, [Put(key, encode_job(record))])
        if revision is not None:
            created = dataclasses.replace(record, mod_revision=revision)
            self._emit(self.table.record_write(created))
            return created, True
        existing = await self.fetch(record.job_id)
        if existing is None:
            raise IdConflict(f"job {record.job_id} was created and deleted concurrently; submit again")
        if existing.digest != record.digest:
            raise IdConflict(
                f"request_id {record.job_id!r} already names a different request; "
                "use a new request_id for a new job, or resend the identical request to get the same job"
            )
        return existing, False

    async def fetch(self, job_id: str) -> JobRecord | None:
        """The job from etcd: open under jobs/, else finished through done/ (None if neither)."""
        kv = await self.kv.get(self.keys.job(job_id))
        if kv is not None:
            record = decode_job(kv)
            self._emit(self.table.record_write(record))
            return record
        pointer = await self.kv.get(self.keys.done_of(job_id))
        if pointer is None:
            return None
        entry = await self.kv.get(DoneRecord.from_json(pointer.value).key)
        return None if entry is None else decode_job(entry)

    async def tombstone(self, job_id: str) -> ExpiredRecord | None:
        """Why a job is gone: retention removed it (None when no tombstone is left)."""
        kv = await self.kv.get(self.keys.expired_of(job_id))
        return None if kv is None else ExpiredRecord.from_json(kv.value)

    async def running_on(self) -> dict[str, str]:
        """Node id -> the job it holds a claim for, read from etcd's claims/ (for a standby, whose
        table is not loaded); the newest attempt wins if a stale claim lingers on its lease."""
        running: dict[str, tuple[int, str]] = {}
        async for page in range_pages(self.kv, self.keys.claims, LOAD_PAGE):
            for kv in page.items:
                try:
                    job_id, attempt = self.keys.job_attempt_of(kv.key, self.keys.claims)
                    node_id = ClaimRecord.from_json(kv.value).node_id
                except ValueError:
                    continue  # not ours to judge here: the leader's table logs bad records
                if attempt >= running.get(node_id, (0, ""))[0]:
                    running[node_id] = (attempt, job_id)
        return {node_id: job_id for node_id, (_, job_id) in running.items()}

    async def open_records(self) -> list[JobRecord]:
        """Every open job read from etcd in pages (a standby's view; bounded by queue + running)."""
        records = []
        async for page in range_pages(self.kv, self.keys.jobs, LOAD_PAGE):
            records += [decode_job(kv) for kv in page.items]
        return records

    async def history_page(self, before: str, limit: int) -> tuple[list[tuple[str, JobRecord]], bool]:
        """Up to `limit` finished jobs, newest finished first, with history keys below `before`
        ("" = from the newest); each with its key, and whether older ones remain.

        etcd bounds a read by `limit` only in ascending key order, so this finds the start of the
        newest `limit` entries by counting (etcd counts its in-memory index and reads no values):
        a window below `before` that grows 4x from a minute until it holds `limit` entries, then is
        bisected while it holds more than 8 x `limit`; then one ascending read of that window. Each
        count covers only a slice next to what is counted already. With jobs finishing up to now
        this is a few small counts; after a long idle spell a window may first take in many
        entries at once, and each such count costs about 0.2 us per entry (etcd 3.4).
        """
        history = self.keys.history
        end = before or prefix_end(history)
        # From the clock, not from the newest entry (etcd cannot read that cheaply); entries above
        # `top_us` (a skewed clock) are still counted, in the first count.
        top_us = round((self.keys.history_of(before)[0] if before else self._clock() + 60) * 1e6)

        def start_at(window_us: int) -> str:
            return f"{history}{max(0, top_us - window_us):016d}"

        async def between(window_us: int, above_us: int) -> int:
            return await self.kv.count_range(start_at(window_us), start_at(above_us))

        # `counted` entries in [start_at(low), end) < limit <= `total` in [start_at(window), end).
        low, window = 0, _WINDOW_US
        counted = await self.kv.count_range(start_at(0), end)
        while True:
            total = counted + await between(window, low)
            if total >= limit or top_us - window <= 0:
                break
            counted, low, window = total, window, window * 4
        while total > 8 * limit and window - low > 1:
            mid = (low + window) // 2
            at_mid = counted + await between(mid, low)
            if at_mid >= limit:
                window, total = mid, at_mid
            else:
                low, counted = mid, at_mid
        start = start_at(window)
        page = await self.kv.range_page(start, end, max(total, 1))
        newest = page.items[-limit:][::-1]
        # Probing below `start` would walk etcd's index over every older entry: a full window
        # that did not reach the bottom says "maybe more" (the next page may then be empty).
        more = len(page.items) > limit or page.more or (total >= limit and top_us - window > 0)
        return [(kv.key, decode_job(kv)) for kv in newest], more

    async def oldest_finished(self, limit: int) -> tuple[list[tuple[str, JobRecord]], int]:
        """Up to `limit` finished jobs, oldest finished first, with their history keys, and how many
        finished jobs there are in all."""
        total = await count_prefix(self.kv, self.keys.history)
        page = await self.kv.range_page(self.keys.history, prefix_end(self.keys.history), limit)
        return [(kv.key, decode_job(kv)) for kv in page.items], total

    async def remove_finished(
        self, epoch: int, removals: Sequence[tuple[str, str, ExpiredRecord]], lease: int
    ) -> int:
        """Retention: delete each (history key, job id)'s record and done/ pointer and leave the
        tombstone on `lease`, in one txn under the epoch fence; returns its revision."""
        ops: list[Put | Delete] = []
        for entry, job_id, tomb in removals:
            ops += [
                Delete(entry),
                Delete(self.keys.done_of(job_id)),
                Put(self.keys.expired_of(job_id), tomb.to_json(), lease),
            ]
        revision = await self._fenced_txn(epoch, [], ops)
        if revision is None:
            raise Fenced(f"epoch {epoch}: the fence failed while the leader key still matched")
        for _, job_id, _ in removals:
            self.table.finished.pop(job_id, None)
        return revision

    async def write(
        self, old: JobRecord, view: JobView, epoch: int, *, expect_no_claim: bool = False
    ) -> JobRecord | None:
        """Replace `old` (compared by mod revision) with `view` under the epoch fence.

        A final `view` finishes the job in the same txn: history/ and done/ put, jobs/{id},
        claims/{id}/ and results/{id}/ deleted. expect_no_claim: also require that no claim exists
        for old's attempt (a requeue must not race a claim made after our snapshot). None when a
        compare failed: the table will catch up.
        """
        key = self.keys.job(old.job_id)
        compares = [Compare(key, "mod", "==", old.mod_revision)]
        if expect_no_claim:
            compares.append(Compare(self.keys.claim(old.job_id, old.view.attempt), "create", "==", 0))
        new = dataclasses.replace(old, view=view)
        ops: list[Put | Delete] = [Put(key, encode_job(new))]
        if view.final:
            new, ops = self._finishing(new)
        revision = await self._fenced_txn(epoch, compares, ops)
        if revision is None:
            log.info("write of %s lost a compare (stale view or a new claim): skipped", old.job_id)
            return None
        new = dataclasses.replace(new, mod_revision=revision)
        self._emit(self.table.record_write(new))
        return new

    def _finishing(self, record: JobRecord) -> tuple[JobRecord, list[Put | Delete]]:
        """The final `record` with its accepted result embedded, and the ops that move it out of the
        open prefixes: history/ and done/ put, jobs/{id}, claims/{id}/ and results/{id}/ deleted."""
        view = record.view
        stored = self.table.result_for(view) if view.result_attempt else None
        record = dataclasses.replace(record, result=stored.result if stored else record.result)
        entry = self.keys.history_entry(view.finished_at, view.job_id)
        return record, [
            Delete(self.keys.job(view.job_id)),
            Delete(self.keys.claims_of(view.job_id), prefix=True),
            Delete(self.keys.results_of(view.job_id), prefix=True),
            Put(entry, encode_job(record)),
            Put(self.keys.done_of(view.job_id), DoneRecord(entry, view.finished_at).to_json()),
        ]

    async def move_legacy(self, records: Sequence[JobRecord], epoch: int) -> int:
        """Move final records the previous schema left under jobs/ to history/ + done/ (results taken
        from results/{id}/{attempt}), all in one txn under the epoch fence, each compared on its mod
        revision; returns how many moved. A lost compare retries them one by one, skipping losers.
        At most MOVE_BATCH records (etcd's --max-txn-ops)."""
        compares, ops = [], []
        for record in records:
            compares.append(Compare(self.keys.job(record.job_id), "mod", "==", record.mod_revision))
            ops += self._finishing(record)[1]
        if await self._fenced_txn(epoch, compares, ops) is None:
            if len(records) == 1:
                log.info("legacy job %s changed under us: not moved to history/", records[0].job_id)
                return 0
            return sum([await self.move_legacy([r], epoch) for r in records])
        for record in records:
            self.table.forget(record.job_id)
        return len(records)


class LegacyBacklog:
    """Finished jobs the previous schema left under jobs/, moved to history/ one bounded batch at a
    time (`MOVE_BATCH` per fenced txn), so a new leader's dispatch never waits behind all of them."""

    def __init__(self, store: JobStore, records: Sequence[JobRecord]) -> None:
        self._store = store
        self._pending = list(records)
        self._moved = 0
        self._since = time.monotonic()

    def __len__(self) -> int:
        return len(self._pending)

    async def move_batch(self, epoch: int) -> None:
        batch, self._pending = self._pending[:MOVE_BATCH], self._pending[MOVE_BATCH:]
        self._moved += await self._store.move_legacy(batch, epoch)
        if not self._pending:
            log.info(
                "moved %d finished jobs of the previous schema from jobs/ to history/ in %.1f s",
                self._moved,
                time.monotonic() - self._since,
            )
