from __future__ import annotations

import pytest

from i2v_client import NodeClient, check_address, clip, parse_targets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:50051", "127.0.0.1:50051", id="ipv4"),
        pytest.param(" coord-1.example:50100 ", "coord-1.example:50100", id="name-blanks-stripped"),
        pytest.param("[::1]:1", "[::1]:1", id="ipv6-in-brackets"),
        pytest.param("h:65535", "h:65535", id="highest-port"),
    ],
)
def test_check_address_accepts_host_port(text: str, expected: str) -> None:
    assert check_address(text, "--node") == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("foo", "'foo': expected HOST:PORT", id="no-port"),
        pytest.param("http://x:1", "'http://x:1': give HOST:PORT without a scheme", id="a-scheme"),
        pytest.param("127.0.0.1:99999", "port 99999 is out of range; use 1..65535", id="port-too-high"),
        pytest.param("h:0", "port 0 is out of range", id="port-zero"),
        pytest.param(":50051", "expected HOST:PORT", id="no-host"),
        pytest.param("h:", "expected HOST:PORT", id="empty-port"),
        pytest.param("h:http", "expected HOST:PORT", id="named-port"),
        pytest.param("::1:50051", "write an IPv6 host in brackets", id="bare-ipv6"),
        pytest.param("a b:1", "expected HOST:PORT", id="a-blank-in-the-host"),
        pytest.param("h/x:1", "expected HOST:PORT", id="a-path"),
    ],
)
def test_check_address_refuses_in_one_sentence_naming_the_flag(text: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        check_address(text, "--target")
    message = str(err.value)
    assert message.startswith("--target ") and says in message and "\n" not in message


def test_a_long_address_is_not_echoed_whole() -> None:
    with pytest.raises(ValueError) as err:
        check_address("x" * 10_000 + ":1", "--node")
    assert len(str(err.value)) < 200 and "…" in str(err.value)


def test_parse_targets_checks_every_address_and_names_the_source() -> None:
    assert parse_targets("a:1, b:2", "$I2V_TARGETS") == ["a:1", "b:2"]
    with pytest.raises(ValueError, match=r"^\$I2V_TARGETS 'b': expected HOST:PORT"):
        parse_targets("a:1,b", "$I2V_TARGETS")


def test_node_client_refuses_a_bad_address_before_dialling() -> None:
    with pytest.raises(ValueError, match="node address 'http://n:1'"):
        NodeClient("http://n:1")


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("short", 80, "short", id="short-enough"),
        pytest.param("a" * 80, 80, "a" * 80, id="exactly-the-limit"),
        pytest.param("abcdefghij", 7, "abcd…ij", id="start-and-end-kept"),
    ],
)
def test_clip(text: str, limit: int, expected: str) -> None:
    assert clip(text, limit) == expected
    assert len(clip("x" * 1000, limit)) == limit
