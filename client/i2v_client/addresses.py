"""Server addresses checked before anything is dialled: a typo is one sentence at once, not a
connection that fails (or hangs) later."""

from __future__ import annotations

from collections.abc import Sequence

from i2v_client.text import clip
from i2v_contract.addresses import parse_address

EXAMPLE = "127.0.0.1:50051 or [::1]:50051"
HOST_MAX = 253  # DNS


def check_address(text: str, source: str = "address") -> str:
    """`text` without surrounding blanks when it is a HOST:PORT that can be dialled; ValueError naming
    `source` (the flag or variable it came from) and what is wrong, in one sentence."""
    address = text.strip()
    shown = f"{source} {clip(address)!r}"
    if "://" in address:
        raise ValueError(f"{shown}: give HOST:PORT without a scheme, such as {EXAMPLE}")
    port = address.rpartition(":")[2]
    if port.isdigit() and not 1 <= int(port) <= 65535:
        raise ValueError(f"{shown}: port {clip(port, 12)} is out of range; use 1..65535")
    try:
        host, _ = parse_address(address)
    except ValueError:
        raise ValueError(f"{shown}: expected HOST:PORT, such as {EXAMPLE}") from None
    if ":" in host and not address.startswith("["):
        raise ValueError(f"{shown}: write an IPv6 host in brackets, such as [::1]:50051")
    if not host or any(c in host for c in "/ \t@?#"):
        raise ValueError(f"{shown}: expected HOST:PORT, such as {EXAMPLE}")
    if len(host) > HOST_MAX:
        raise ValueError(f"{shown}: the host is {len(host)} characters; a host name has at most {HOST_MAX}")
    return address


def parse_targets(text: str | Sequence[str], source: str = "--target") -> list[str]:
    """'a:1,b:2' or ['a:1', 'b:2'] -> ['a:1', 'b:2'] (duplicates and blanks dropped), each checked by
    `check_address`; ValueError when there is none or one is not HOST:PORT."""
    items = text.split(",") if isinstance(text, str) else list(text)
    targets = list(dict.fromkeys(check_address(t, source) for t in items if t.strip()))
    if not targets:
        raise ValueError("no coordinator address given; use --target HOST:PORT[,HOST:PORT...]")
    return targets
