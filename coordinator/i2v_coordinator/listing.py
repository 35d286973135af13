"""ListJobs paging: limits, state filters and page tokens (pure), and one page from bounded reads.

A listing walks open jobs newest first (the leader's table, or a paged read of jobs/ on a standby),
then finished ones newest first from a read of at most about 4 x `limit` history/ keys
(JobStore.history_page); the state filter applies within that read, so a page may be short. A page
also ends before its jobs add up to more than PAGE_BYTES serialized, so no ListJobs answer nears
gRPC's default 4 MiB message limit however long the prompts. Page tokens are opaque to clients:
base64 of the phase and the last key (cursor) the page covered. With `owner` set (a client, not an
admin, when tokens are on) only that client's jobs are kept, filtered like the states.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence

from i2v_contract.ids import clip
from i2v_contract.keys import Keys
from i2v_contract.limits import FieldError
from i2v_contract.states import ACTIVE_STATES, QUEUED
from i2v_contract.wire import coordinator_pb2
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.records import JobRecord

LIST_JOBS_DEFAULT, LIST_JOBS_MAX = 100, 1000
PAGE_BYTES = 3 * 1024 * 1024  # a page's jobs, serialized: under gRPC's default 4 MiB receive limit
# Tokens this service issues hold a phase and a cursor (a time, a job id, for finished jobs the key
# prefix too): a few hundred characters. Longer ones are refused before they are decoded.
PAGE_TOKEN_MAX_CHARS = 4096
OPEN, HISTORY = "open", "history"  # ListJobs phases: open jobs (bounded), then finished ones
_OPEN_STATES = frozenset({QUEUED, *ACTIVE_STATES})


def list_limit(requested: int) -> int:
    """ListJobsRequest.limit -> how many jobs to return; FieldError (INVALID_ARGUMENT) beyond the max."""
    if requested > LIST_JOBS_MAX:
        raise FieldError(
            "limit",
            f"{requested} is above {LIST_JOBS_MAX}; ask for at most {LIST_JOBS_MAX} "
            f"(0 means {LIST_JOBS_DEFAULT}) and narrow the list with states",
        )
    return requested or LIST_JOBS_DEFAULT


def state_filter(states: Sequence[int]) -> frozenset[int]:
    """ListJobsRequest.states -> the states to keep (empty = all); FieldError on unknown values."""
    known = set(coordinator_pb2.JobState.values()) - {coordinator_pb2.JOB_STATE_UNSPECIFIED}
    bad = [s for s in states if s not in known]
    if bad:
        names = ", ".join(coordinator_pb2.JobState.Name(s) for s in sorted(known))
        raise FieldError(
            "states", f"{clip(str(bad))} are not job states; use any of {names}, or none for every state"
        )
    return frozenset(states)


def open_cursor(record: JobRecord) -> str:
    """An open job's place in newest-first order: created time, then id."""
    return f"{max(0, round(record.view.created_at * 1e6)):016d}-{record.job_id}"


def newest_open(
    records: Iterable[JobRecord], states: frozenset[int], limit: int, after: str = ""
) -> tuple[list[JobRecord], bool]:
    """The `limit` newest jobs (by created time, then id) below cursor `after` ("" = from the
    newest) whose state is in `states` (empty = any), and whether more remain."""
    kept = [
        r for r in records if (not states or r.view.state in states) and (not after or open_cursor(r) < after)
    ]
    kept.sort(key=open_cursor, reverse=True)
    return kept[:limit], len(kept) > limit


def page_token(phase: str, after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([phase, after]).encode()).decode()


def parse_page_token(token: str, keys: Keys) -> tuple[str, str]:
    """ListJobsRequest.page_token -> (phase, after); FieldError (INVALID_ARGUMENT) on anything else."""
    if not token:
        return OPEN, ""
    try:
        if len(token) > PAGE_TOKEN_MAX_CHARS:
            raise ValueError(len(token))
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(decoded, list) or len(decoded) != 2:
            raise ValueError(decoded)
        phase, after = decoded
        if not isinstance(after, str) or phase not in (OPEN, HISTORY):
            raise ValueError(phase)
        if phase == HISTORY and after:
            keys.history_of(after)
    except (ValueError, TypeError, binascii.Error, UnicodeError, RecursionError):
        raise FieldError(
            "page_token",
            f"{token[:40]!r} is not a token this service issued; pass a "
            "ListJobsResponse.next_page_token unchanged, or leave it empty for the first page",
        ) from None
    return phase, after


def within(records: Sequence[JobRecord], size_of: Callable[[JobRecord], int], budget: int) -> list[JobRecord]:
    """The leading records whose sizes add up to at most `budget` (the first one always)."""
    kept: list[JobRecord] = []
    for record in records:
        budget -= size_of(record)
        if budget < 0 and kept:
            break
        kept.append(record)
    return kept


async def list_page(
    store: JobStore,
    leading: bool,
    states: frozenset[int],
    limit: int,
    phase: str,
    after: str,
    size_of: Callable[[JobRecord], int] = lambda record: 0,
    budget: int = PAGE_BYTES,
    *,
    owner: str | None = None,
) -> tuple[list[JobRecord], str]:
    """One page and the token of the next ("" when none). `leading`: the open jobs come from the
    leader's table instead of a read of jobs/. The page ends early where the jobs' `size_of` would
    add up to more than `budget` bytes."""
    out: list[JobRecord] = []
    if phase == OPEN:
        if not states or states & _OPEN_STATES:
            records: Iterable[JobRecord] = (
                store.table.jobs.values() if leading else await store.open_records()
            )
            if owner is not None:
                records = [r for r in records if r.owner == owner]
            newest, more = newest_open(records, states, limit, after)
            out = within(newest, size_of, budget)
            if more or len(out) < len(newest):
                return out, page_token(OPEN, open_cursor(out[-1]))
        phase, after = HISTORY, ""
    if states and not states - _OPEN_STATES:
        return out, ""
    if len(out) == limit:
        return out, page_token(HISTORY, "")
    entries, more = await store.history_page(after, limit - len(out))
    budget -= sum(size_of(r) for r in out)
    for key, record in entries:
        if (states and record.view.state not in states) or (owner is not None and record.owner != owner):
            after = key
            continue
        budget -= size_of(record)
        if budget < 0 and out:
            return out, page_token(HISTORY, after)
        out.append(record)
        after = key
    return out, page_token(HISTORY, after) if more and entries else ""
