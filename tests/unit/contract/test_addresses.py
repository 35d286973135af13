"""Address parsing and advertising: flags, member records and etcd endpoint lists."""

import socket

import pytest

from i2v_contract.addresses import advertise, format_address, parse_address, parse_endpoints


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        pytest.param("127.0.0.1:50051", "127.0.0.1", 50051, id="ipv4"),
        pytest.param("[::1]:7000", "::1", 7000, id="ipv6-brackets-dropped"),
        pytest.param("[::]:0", "::", 0, id="ipv6-wildcard-port-0"),
        pytest.param("gpu-box:65535", "gpu-box", 65535, id="hostname-highest-port"),
    ],
)
def test_an_address_parses_to_host_and_port_and_formats_back(text: str, host: str, port: int) -> None:
    assert parse_address(text) == (host, port)
    assert format_address(host, port) == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("127.0.0.1", id="no-port"),
        pytest.param(":50051", id="no-host"),
        pytest.param("host:", id="empty-port"),
        pytest.param("host:x", id="port-not-a-number"),
        pytest.param("host:-1", id="negative-port"),
        pytest.param("host:65536", id="port-above-65535"),
    ],
)
def test_a_bad_address_is_refused_naming_it_and_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=f"address '{text}': expected host:port"):
        parse_address(text)


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        pytest.param("127.0.0.1:50051", "127.0.0.1:50051", id="ipv4-kept"),
        pytest.param("[::1]:7000", "[::1]:7000", id="ipv6-in-brackets"),
        pytest.param("0.0.0.0:50051", f"{socket.gethostname()}:50051", id="ipv4-wildcard-becomes-hostname"),
        pytest.param("[::]:50051", f"{socket.gethostname()}:50051", id="ipv6-wildcard-becomes-hostname"),
    ],
)
def test_a_node_advertises_its_bound_address_with_wildcards_as_the_hostname(
    bound: str, expected: str
) -> None:
    assert advertise(bound, None, socket.gethostname()) == expected


@pytest.mark.parametrize(
    ("listen", "port", "expected_host"),
    [
        pytest.param("127.0.0.1:0", 4100, "127.0.0.1:4100", id="ipv4-port-0"),
        pytest.param("[::1]:0", 4100, "[::1]:4100", id="ipv6-port-0"),
    ],
)
def test_a_coordinator_advertises_the_port_it_actually_bound(
    listen: str, port: int, expected_host: str
) -> None:
    assert advertise(listen, port, "unused") == expected_host


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:2379", ["127.0.0.1:2379"], id="one"),
        pytest.param(
            "127.0.0.1:2379, 127.0.0.1:22379",
            ["127.0.0.1:2379", "127.0.0.1:22379"],
            id="comma-separated-with-spaces",
        ),
        pytest.param(
            "http://etcd-0:2379/,HTTP://etcd-1:2379",
            ["etcd-0:2379", "etcd-1:2379"],
            id="http-scheme-and-slash-dropped",
        ),
        pytest.param("[::1]:2379,", ["[::1]:2379"], id="ipv6-and-trailing-comma"),
    ],
)
def test_etcd_endpoint_lists_parse_to_host_port(text: str, expected: list[str]) -> None:
    assert parse_endpoints(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "no etcd endpoints", id="empty"),
        pytest.param(" , ", "no etcd endpoints", id="only-separators"),
        pytest.param("127.0.0.1", "expected host:port", id="no-port"),
        pytest.param("127.0.0.1:0", "port must be 1..65535", id="port-0"),
        pytest.param("127.0.0.1:http", "port must be 1..65535", id="port-not-a-number"),
        pytest.param("https://127.0.0.1:2379", "not supported", id="https-scheme"),
        pytest.param("::1:2379", "brackets", id="ipv6-without-brackets"),
        pytest.param("host:2379/path", "expected host:port", id="path-after-port"),
        pytest.param(":2379", "expected host:port", id="no-host"),
    ],
)
def test_bad_etcd_endpoints_are_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoints(text)


@pytest.mark.parametrize(
    ("text", "tls", "outcome"),
    [
        pytest.param(
            "https://etcd-0:2379,etcd-1:2379", True, ["etcd-0:2379", "etcd-1:2379"], id="https-with-tls"
        ),
        pytest.param("https://etcd-0:2379", False, "give --etcd-ca", id="https-without-tls"),
        pytest.param("http://etcd-0:2379", True, "'http' is plaintext", id="http-with-tls"),
        pytest.param("ftp://etcd-0:2379", True, "not supported", id="other-scheme-with-tls"),
    ],
)
def test_https_endpoints_need_tls_settings(text: str, tls: bool, outcome: list[str] | str) -> None:
    if isinstance(outcome, list):
        assert parse_endpoints(text, tls=tls) == outcome
        return
    with pytest.raises(ValueError, match=outcome):
        parse_endpoints(text, tls=tls)
