"""Address parsing and advertising: flags, member records and etcd endpoint lists."""

import socket

import pytest

from i2v_contract.addresses import advertise, parse_endpoints


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("[::1]:7000", "[::1]:7000"),
        ("0.0.0.0:50051", f"{socket.gethostname()}:50051"),
        ("[::]:50051", f"{socket.gethostname()}:50051"),
    ],
)
def test_a_node_advertises_its_bound_address_with_wildcards_as_the_hostname(
    bound: str, expected: str
) -> None:
    assert advertise(bound, None, socket.gethostname()) == expected


@pytest.mark.parametrize(
    ("listen", "port", "expected_host"),
    [("127.0.0.1:0", 4100, "127.0.0.1:4100"), ("[::1]:0", 4100, "[::1]:4100")],
)
def test_a_coordinator_advertises_the_port_it_actually_bound(
    listen: str, port: int, expected_host: str
) -> None:
    assert advertise(listen, port, "unused") == expected_host


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2379", ["127.0.0.1:2379"]),
        ("127.0.0.1:2379, 127.0.0.1:22379", ["127.0.0.1:2379", "127.0.0.1:22379"]),
        ("http://etcd-0:2379/,HTTP://etcd-1:2379", ["etcd-0:2379", "etcd-1:2379"]),
        ("[::1]:2379,", ["[::1]:2379"]),
    ],
)
def test_parse_endpoints(text: str, expected: list[str]) -> None:
    assert parse_endpoints(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no etcd endpoints"),
        (" , ", "no etcd endpoints"),
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:0", "port must be 1..65535"),
        ("127.0.0.1:http", "port must be 1..65535"),
        ("https://127.0.0.1:2379", "not supported"),
        ("::1:2379", "brackets"),
        ("host:2379/path", "expected host:port"),
        (":2379", "expected host:port"),
    ],
)
def test_parse_endpoints_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoints(text)
