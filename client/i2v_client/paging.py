"""ListJobs paging: a page, the token to go on from, and a walk over pages within a bound."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from i2v_client.errors import CallError
from i2v_contract.wire import coordinator_pb2

PAGE_MAX = 1000  # the most the server returns in one ListJobs page
# Requests one walk makes at most: a rare state over a long history comes back in short pages.
REQUESTS_MAX = 100


@dataclass(frozen=True)
class JobPage:
    """One ListJobs page: its jobs, and the token of the next page ("" = this was the last)."""

    jobs: tuple[coordinator_pb2.Job, ...]
    next_page_token: str


def next_token(page: JobPage, page_token: str) -> str:
    """The token after `page` (fetched with `page_token`); "" when it was the last. A token that
    does not move would loop forever: INTERNAL."""
    if page.next_page_token and page.next_page_token == page_token:
        raise CallError(grpc.StatusCode.INTERNAL, "list jobs: the server returned the same page token")
    return page.next_page_token


def collect_jobs(
    pages: Callable[[int, str], JobPage], want: int, page_token: str = "", *, requests_max: int = REQUESTS_MAX
) -> tuple[list[coordinator_pb2.Job], str]:
    """Up to `want` jobs from `page_token` on, following tokens (a filtered page can be short or
    empty) for at most `requests_max` requests of `pages(limit, token)`; returns them and the token
    to go on from ("" = nothing more)."""
    jobs: list[coordinator_pb2.Job] = []
    for _ in range(requests_max):
        page = pages(min(PAGE_MAX, want - len(jobs)), page_token)
        jobs.extend(page.jobs)
        page_token = next_token(page, page_token)
        if not page_token or len(jobs) >= want:
            break
    return jobs, page_token
