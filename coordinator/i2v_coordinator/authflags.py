"""The coordinator's authentication and per-client limit flags, and the Access they make.

    --tokens-file PATH [I2V_TOKENS_FILE]                 bearer tokens (hashed), reloaded on change
    --dispatch-token-file PATH [I2V_DISPATCH_TOKEN_FILE] the token presented to nodes
    --max-queued-per-client N, --submit-rate PER_S, --submit-burst N, --max-streams-per-client N

Without --tokens-file nothing is authenticated, as before; the limits apply with or without it.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field

from i2v_common.tokens import TokensError, TokensFile, TokenSource
from i2v_coordinator.access import Access, AccessMetrics
from i2v_coordinator.quotas import ClientLimits, Quotas


@dataclass(frozen=True)
class AccessConfig:
    tokens_file: str = ""
    dispatch_token_file: str = ""
    limits: ClientLimits = field(default_factory=ClientLimits)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0 = no limit), got {text!r}")
    return int(text)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of submits per second, got {text!r}") from None
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be >= 0 submits per second (0 = no limit), got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("authentication and per-client limits")
    g.add_argument(
        "--tokens-file",
        default=os.environ.get("I2V_TOKENS_FILE", ""),
        metavar="PATH",
        help="bearer tokens, one `sha256:<hex> <client-name> <client|admin>` a line (`i2v token new` "
        "makes them); reloaded when it changes; default $I2V_TOKENS_FILE, none = no authentication",
    )
    g.add_argument(
        "--dispatch-token-file",
        default=os.environ.get("I2V_DISPATCH_TOKEN_FILE", ""),
        metavar="PATH",
        help="a token (in the nodes' tokens file) sent on every call to a node; default "
        "$I2V_DISPATCH_TOKEN_FILE",
    )
    g.add_argument("--max-queued-per-client", type=_count, default=0, metavar="N", help="0 = no limit")
    g.add_argument("--submit-rate", type=_rate, default=0.0, metavar="PER_S", help="per client; 0 = no limit")
    g.add_argument(
        "--submit-burst",
        type=_count,
        default=0,
        metavar="N",
        help="submits allowed at once (default: the rate)",
    )
    g.add_argument("--max-streams-per-client", type=_count, default=0, metavar="N", help="0 = no limit")


def from_args(a: argparse.Namespace) -> AccessConfig:
    limits = ClientLimits(a.max_queued_per_client, a.submit_rate, a.submit_burst, a.max_streams_per_client)
    return AccessConfig(a.tokens_file, a.dispatch_token_file, limits)


def open_access(config: AccessConfig, metrics: AccessMetrics) -> tuple[Access, TokenSource | None]:
    """The Access for the servicer and front door, and the dispatch token; ValueError says why not."""
    try:
        tokens = TokensFile(config.tokens_file) if config.tokens_file else None
    except TokensError as err:
        raise ValueError(str(err)) from None
    dispatch = TokenSource(config.dispatch_token_file) if config.dispatch_token_file else None
    return Access(tokens, Quotas(config.limits), metrics), dispatch
