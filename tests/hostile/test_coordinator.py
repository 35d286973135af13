"""Hostile calls to real coordinators (the leader, and the standby that forwards job calls to it):
Submit and Generate with bad fields, ids, images and URIs; Watch, Get, Cancel, Download and ListJobs
with ids, tokens and numbers that are not theirs. A submit that is admitted is cancelled at once,
so the barrage never queues work in front of the sentinels."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from i2v_contract.limits import DEFAULT_LIMITS as L
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.hostile import strategies as hs
from tests.hostile.conftest import HOSTILE
from tests.hostile.servers import MIB, HostileCluster
from tests.hostile.tally import Tally

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

WHICH = st.sampled_from(["leader", "standby"])


def cancel_admitted(cluster: HostileCluster, job_id: str) -> None:
    if job_id in cluster.sentinels:  # the same request_id as a sentinel gets the sentinel back
        return
    try:
        cluster.coordinator().Cancel(coordinator_pb2.CancelRequest(job_id=job_id), timeout=10)
    except grpc.RpcError as err:  # finished already: nothing to cancel
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()


@given(data=st.data(), which=WHICH)
@HOSTILE
def test_submit_refuses_hostile_requests_with_a_named_field(
    cluster: HostileCluster, tally: Tally, data: st.DataObject, which: str
) -> None:
    request = data.draw(hs.submits(cluster.store_root))
    try:
        response = cluster.coordinator(which).Submit(request, timeout=30)
    except grpc.RpcError as err:
        tally.error(which, "submit", err, request)
        return
    tally.ok(which, "submit")
    cancel_admitted(cluster, response.job_id)


@given(data=st.data(), which=WHICH)
@HOSTILE
def test_generate_refuses_hostile_requests_with_a_named_field(
    cluster: HostileCluster, tally: Tally, data: st.DataObject, which: str
) -> None:
    request = data.draw(hs.submits(cluster.store_root))
    call = cluster.coordinator(which).Generate(request, timeout=30)
    try:
        first = next(iter(call))
    except grpc.RpcError as err:
        tally.error(which, "generate", err, request)
        return
    call.cancel()
    tally.ok(which, "generate", "STARTED")
    cancel_admitted(cluster, first.job_id)


@given(job_id=hs.job_ids(), which=WHICH, method=st.sampled_from(["Get", "Cancel", "Watch"]))
@HOSTILE
def test_job_calls_refuse_malformed_ids(
    cluster: HostileCluster, tally: Tally, job_id: str, which: str, method: str
) -> None:
    stub = cluster.coordinator(which)
    try:
        if method == "Get":
            stub.Get(coordinator_pb2.GetRequest(job_id=job_id), timeout=10)
        elif method == "Cancel":
            stub.Cancel(coordinator_pb2.CancelRequest(job_id=job_id), timeout=10)
        else:
            call = stub.Watch(coordinator_pb2.WatchRequest(job_id=job_id), timeout=10)
            next(iter(call))
            call.cancel()
        tally.ok(which, method)
    except grpc.RpcError as err:
        tally.error(which, method, err, job_id)


@given(
    job_id=hs.job_ids(),
    what=st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(-(2**31), 2**31 - 1)),
    frame=hs.uint32(),
    offset=st.one_of(st.sampled_from([0, 1, hs.UINT64_MAX]), st.integers(0, hs.UINT64_MAX)),
    limit=st.one_of(st.sampled_from([0, 1, hs.UINT64_MAX]), st.integers(0, hs.UINT64_MAX)),
    which=WHICH,
)
@HOSTILE
def test_download_refuses_malformed_requests(
    cluster: HostileCluster,
    tally: Tally,
    job_id: str,
    what: int,
    frame: int,
    offset: int,
    limit: int,
    which: str,
) -> None:
    request = coordinator_pb2.DownloadRequest(
        job_id=job_id, what=what, frame=frame, offset=offset, limit=limit
    )  # type: ignore[arg-type]
    try:
        for _ in cluster.coordinator(which).Download(request, timeout=10):
            pass
        tally.ok(which, "Download")
    except grpc.RpcError as err:
        tally.error(which, "Download", err, request)


@given(
    states=st.lists(st.one_of(st.integers(0, 8), st.integers(-(2**31), 2**31 - 1)), max_size=20),
    limit=hs.uint32(),
    token=hs.page_tokens(),
    which=WHICH,
)
@HOSTILE
def test_list_jobs_refuses_malformed_pages(
    cluster: HostileCluster, tally: Tally, states: list[int], limit: int, token: str, which: str
) -> None:
    request = coordinator_pb2.ListJobsRequest(states=states, limit=limit, page_token=token)  # type: ignore[arg-type]
    try:
        cluster.coordinator(which).ListJobs(request, timeout=10)
        tally.ok(which, "ListJobs")
    except grpc.RpcError as err:
        tally.error(which, "ListJobs", err, request)


@pytest.mark.parametrize(
    ("size", "code"),
    [
        pytest.param(L.max_image_bytes + 1, grpc.StatusCode.INVALID_ARGUMENT, id="image-just-over-the-limit"),
        pytest.param(70 * MIB, grpc.StatusCode.RESOURCE_EXHAUSTED, id="message-over-the-receive-limit"),
    ],
)
def test_oversized_submits_are_refused(
    cluster: HostileCluster, tally: Tally, size: int, code: grpc.StatusCode
) -> None:
    request = coordinator_pb2.SubmitRequest(
        request=common_pb2.GenerationRequest(image=b"\x89PNG" + b"\0" * size)
    )
    for which in ("leader", "standby"):
        with pytest.raises(grpc.RpcError) as err:
            cluster.coordinator(which).Submit(request, timeout=60)
        assert err.value.code() == code, f"{which}: {err.value.code()} {err.value.details()}"
        tally.error(which, "oversized", err.value, size)
