"""The front door's decisions: local, forward or refuse; field checks first; metadata across the hop."""

from __future__ import annotations

import pytest

from i2v_contract.wire import LEADER_ADDR_METADATA, common_pb2, coordinator_pb2
from i2v_coordinator.frontdoor import (
    FORWARDED_BY_METADATA,
    RETRY_AFTER_METADATA,
    Route,
    Routing,
    field_problem,
    forwarded_by,
    moved,
    outgoing,
    refusal_trailers,
    relayed_initial,
    relayed_trailers,
    route,
    same_leader,
)

ME, MY_ADDR = "c2", "10.0.0.2:50100"
LEADER = ("c1", "10.0.0.1:50100")
ETCD = "etcd unreachable at e:2379 for 2.0 s (x); the coordinator cannot read or write jobs"


def decide(
    method: str = "Submit",
    *,
    leading: bool = False,
    leader: tuple[str, str] | None = LEADER,
    forwarded: str = "",
    etcd: str = "",
) -> Routing:
    return route(
        method,
        me=ME,
        my_addr=MY_ADDR,
        leading=leading,
        leader=leader,
        forwarded_by=forwarded,
        etcd_error=etcd,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected", "says"),
    [
        pytest.param({}, Route.FORWARD, "", id="standby-forwards-to-the-leader"),
        pytest.param({"method": "Watch"}, Route.FORWARD, "", id="streams-too"),
        pytest.param({"leading": True}, Route.LOCAL, "", id="the-leader-serves"),
        pytest.param({"leading": True, "forwarded": "c3"}, Route.LOCAL, "", id="the-leader-serves-a-hop"),
        pytest.param({"method": "ListJobs"}, Route.LOCAL, "", id="views-answered-anywhere"),
        pytest.param({"method": "Download"}, Route.LOCAL, "", id="downloads-streamed-by-the-standby"),
        pytest.param(
            {"method": "Download", "leader": None, "etcd": ETCD}, Route.LOCAL, "", id="download-sans-leader"
        ),
        pytest.param(
            {"method": "ClusterStatus", "leader": None, "etcd": ETCD}, Route.LOCAL, "", id="status-too"
        ),
        pytest.param({"leader": (ME, MY_ADDR)}, Route.LOCAL, "", id="never-to-itself-by-id"),
        pytest.param({"leader": ("old-me", MY_ADDR)}, Route.LOCAL, "", id="never-to-itself-by-address"),
        pytest.param({"leader": None}, Route.REFUSE, "no leader elected yet; retry", id="no-leader"),
        pytest.param(
            {"leader": ("c1", "")}, Route.REFUSE, "no leader elected yet", id="leader-without-address"
        ),
        pytest.param(
            {"forwarded": "c3"},
            Route.REFUSE,
            "forwarded by c3 but does not lead (the leader is c1",
            id="one-hop",
        ),
        pytest.param(
            {"forwarded": "c3", "leader": None}, Route.REFUSE, "no leader is known", id="one-hop-no-leader"
        ),
        pytest.param({"leading": True, "etcd": ETCD}, Route.REFUSE, ETCD, id="leader-without-etcd"),
        pytest.param({"leader": None, "etcd": ETCD}, Route.REFUSE, ETCD, id="nobody-to-ask-without-etcd"),
        pytest.param({"etcd": ETCD}, Route.FORWARD, "", id="the-leader-may-still-reach-etcd"),
    ],
)
def test_route(kwargs: dict[str, object], expected: Route, says: str) -> None:
    routing = decide(**kwargs)  # type: ignore[arg-type]
    assert routing.route is expected and says in routing.message
    if expected is Route.FORWARD:
        assert (routing.leader_id, routing.leader_addr) == LEADER


def test_a_hop_refusal_hints_at_the_leader_it_sees() -> None:
    routing = decide(forwarded="c3")
    assert routing.leader_addr == LEADER[1]
    assert refusal_trailers(routing.leader_addr) == (
        (LEADER_ADDR_METADATA, LEADER[1]),
        (RETRY_AFTER_METADATA, "1000"),
    )
    assert refusal_trailers("") == ((RETRY_AFTER_METADATA, "1000"),)


@pytest.mark.parametrize(
    ("method", "message", "problem"),
    [
        pytest.param(
            "Get", coordinator_pb2.GetRequest(job_id="bad/id"), "job_id: 'bad/id' is not", id="slash"
        ),
        pytest.param("Watch", coordinator_pb2.WatchRequest(job_id=""), "job_id: is empty", id="empty"),
        pytest.param("Cancel", coordinator_pb2.CancelRequest(job_id="x" * 2_000_000), "job_id: ", id="2-MB"),
        pytest.param("Get", coordinator_pb2.GetRequest(job_id="ok-1"), "", id="good-id"),
        pytest.param(
            "Submit", coordinator_pb2.SubmitRequest(request_id="a b"), "request_id: ", id="request-id"
        ),
        pytest.param("Submit", coordinator_pb2.SubmitRequest(), "", id="no-request-id"),
        pytest.param(
            "Generate",
            coordinator_pb2.SubmitRequest(request=common_pb2.GenerationRequest(model="m" * 999)),
            "model: ",
            id="model-name",
        ),
        pytest.param("ListJobs", coordinator_pb2.ListJobsRequest(page_token="x"), "", id="not-a-job-call"),
    ],
)
def test_field_problem(method: str, message: object, problem: str) -> None:
    error = field_problem(method, message)
    found = error.message if error is not None else ""
    assert found.startswith(problem) if problem else found == ""
    assert len(found) < 400
    assert error is None or found.startswith(f"{error.field}: ")


def test_metadata_across_the_hop() -> None:
    invocation = (
        ("user-agent", "grpc-python"),
        (":authority", "x"),
        ("grpc-accept-encoding", "gzip"),
        ("x-request-id", "r1"),
        ("trace-bin", b"\x01"),
        (FORWARDED_BY_METADATA, "liar"),
    )
    assert outgoing(invocation, ME) == (
        ("x-request-id", "r1"),
        ("trace-bin", b"\x01"),
        (FORWARDED_BY_METADATA, ME),
    )
    assert forwarded_by(outgoing(invocation, ME)) == ME and forwarded_by(()) == ""
    assert relayed_initial((("content-type", "application/grpc"), ("x-a", "1"))) == (("x-a", "1"),)
    trailers = (("grpc-status-details-bin", b"\x08\x05"), ("grpc-message", "m"), ("x-b", "2"))
    assert relayed_trailers(trailers, LEADER[1]) == (
        ("grpc-status-details-bin", b"\x08\x05"),
        ("x-b", "2"),
        (LEADER_ADDR_METADATA, LEADER[1]),
    )
    named = ((LEADER_ADDR_METADATA, "other:1"),)  # the leader's own hint wins
    assert relayed_trailers(named, LEADER[1]) == named and relayed_trailers(None, "") == ()


def test_a_leader_change_mid_call() -> None:
    routing = decide()
    assert same_leader(routing, LEADER)
    assert not same_leader(routing, ("c3", "10.0.0.3:50100")) and not same_leader(routing, None)
    now = moved("Watch", ME, routing, ("c3", "10.0.0.3:50100"))
    assert now.route is Route.REFUSE and now.leader_addr == "10.0.0.3:50100"
    assert now.message.startswith(f"the leader changed from c1 at {LEADER[1]} to c3 at 10.0.0.3:50100")
    assert "no leader known yet" in moved("Watch", ME, routing, None).message
