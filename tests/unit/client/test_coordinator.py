from __future__ import annotations

import pytest

from i2v_client import CallError, CoordinatorClient
from i2v_contract.wire import coordinator_pb2
from tests.fakes.client import FakeStubs
from tests.fakes.clock import ManualClock


class _ListJobsStub:
    """A Coordinator stub that answers ListJobs from `pages` (token -> page) and records the requests."""

    def __init__(self, pages: dict[str, coordinator_pb2.ListJobsResponse]) -> None:
        self.pages = pages
        self.requests: list[coordinator_pb2.ListJobsRequest] = []

    def ListJobs(
        self, request: coordinator_pb2.ListJobsRequest, timeout: float
    ) -> coordinator_pb2.ListJobsResponse:
        self.requests.append(request)
        return self.pages[request.page_token]


def _paged_client(
    pages: dict[str, coordinator_pb2.ListJobsResponse],
) -> tuple[CoordinatorClient, _ListJobsStub]:
    stub = _ListJobsStub(pages)
    client = CoordinatorClient(["a:1"], clock=ManualClock(0.0), stubs=FakeStubs(stub))
    return client, stub


def _page(ids: list[str], token: str) -> coordinator_pb2.ListJobsResponse:
    return coordinator_pb2.ListJobsResponse(
        jobs=[coordinator_pb2.Job(job_id=i) for i in ids], next_page_token=token
    )


def test_list_jobs_sends_states_limit_and_token_and_returns_jobs_with_the_next_token() -> None:
    client, stub = _paged_client({"t1": _page(["j3", "j2"], "t2")})
    page = client.list_jobs([coordinator_pb2.JOB_STATE_SUCCEEDED], 2, "t1")
    assert [j.job_id for j in page.jobs] == ["j3", "j2"] and page.next_page_token == "t2"
    (request,) = stub.requests
    assert (list(request.states), request.limit, request.page_token) == (
        [coordinator_pb2.JOB_STATE_SUCCEEDED],
        2,
        "t1",
    )


def test_job_pages_follow_tokens_to_the_end_through_empty_filtered_pages() -> None:
    client, stub = _paged_client({"": _page(["j5"], "a"), "a": _page([], "b"), "b": _page(["j1", "j0"], "")})
    pages = list(client.job_pages(limit=3))
    assert [[j.job_id for j in p.jobs] for p in pages] == [["j5"], [], ["j1", "j0"]]
    assert [(r.page_token, r.limit) for r in stub.requests] == [("", 3), ("a", 3), ("b", 3)]


def test_job_pages_stop_on_a_token_that_does_not_move() -> None:
    client, _ = _paged_client({"": _page(["j1"], "a"), "a": _page([], "a")})
    with pytest.raises(CallError, match="same page token"):
        list(client.job_pages())


def test_close_closes_the_stubs_it_was_given() -> None:
    stubs = FakeStubs()
    with CoordinatorClient("a:1,b:2", stubs=stubs) as client:
        assert client.targets == ["a:1", "b:2"] and client.target == "a:1"
    assert stubs.closed
