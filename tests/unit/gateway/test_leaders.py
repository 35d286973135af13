"""Leaders against real health services on loopback: the leader name's answers, a coordinator
without that name, a closed port, and every address a name resolves to."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from i2v_gateway.leaders import LEADER_HEALTH, Leaders, resolve
from i2v_gateway.readiness import Answer
from tests.etcd_cluster import free_port


class Coordinator:
    def __init__(self, leads: bool | None) -> None:
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()
        if leads is not None:
            self.lead(leads)

    def lead(self, leads: bool) -> None:
        serving = health_pb2.HealthCheckResponse
        self.health.set(LEADER_HEALTH, serving.SERVING if leads else serving.NOT_SERVING)


@pytest.fixture
def fleet() -> Iterator[list[Coordinator]]:
    coordinators = [Coordinator(True), Coordinator(False), Coordinator(None)]
    yield coordinators
    for c in coordinators:
        c.server.stop(None)


def test_the_leader_name_is_the_coordinators() -> None:
    assert LEADER_HEALTH == "i2v.v1.Coordinator.Leader"


def test_each_address_answers_for_itself(fleet: list[Coordinator]) -> None:
    closed = f"127.0.0.1:{free_port()}"
    leaders = Leaders([c.address for c in fleet] + [closed], None, timeout_s=0.5, resolver=lambda t: [])
    try:
        answers = leaders.ask()
        assert answers == {
            fleet[0].address: Answer.LEADS,
            fleet[1].address: Answer.FOLLOWS,
            fleet[2].address: Answer.FOLLOWS,  # no leader name published: it answered all the same
            closed: Answer.SILENT,
        }
        fleet[0].lead(False)  # the term ended: the same channels see it
        fleet[1].lead(True)
        answers = leaders.ask()
        assert (answers[fleet[0].address], answers[fleet[1].address]) == (Answer.FOLLOWS, Answer.LEADS)
    finally:
        leaders.close()


def test_every_address_of_a_name_is_asked(fleet: list[Coordinator]) -> None:
    # one name for every coordinator (a headless Service): only one of them leads
    name = "coordinators.test:50100"
    leaders = Leaders([name], None, timeout_s=0.5, resolver=lambda t: [c.address for c in fleet])
    try:
        answers = leaders.ask()
        assert answers[fleet[0].address] is Answer.LEADS
        assert answers[name] is Answer.SILENT  # the name itself resolves nowhere here
    finally:
        leaders.close()


def test_resolve_gives_host_port_for_every_address() -> None:
    assert "127.0.0.1:50100" in resolve("127.0.0.1:50100")
    assert resolve("no-such-host.invalid:1") == []
