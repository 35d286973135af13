"""Who is calling and what they may do (pure): bearer tokens, the tokens file, ownership decisions,
and the per-client limits (submit rate, queued jobs, open streams), each returning its reason.

A token is a secret string the client sends as `authorization: Bearer <token>`; servers keep only
its sha256 (`hash_token`), in a tokens file of lines `sha256:<hex> <client-name> <role>` (role
`client` or `admin`; `#` starts a comment). The same name may have several tokens (an old and a
new one while a token is rotated). A presented token is compared against every stored hash with a
constant-time compare, so the time taken says nothing about how close a guess came.

Decisions: a client may get, watch, download and cancel its own jobs; an admin may touch any job
and see the fleet (ClusterStatus, ListNodes). A refused job call gets one answer whether the job
is another client's or does not exist, so ids cannot be probed. With authentication off every
caller is OPEN, an admin with no name, and nothing is refused: the system behaves as without this
module.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CLIENT, ADMIN = "client", "admin"
ROLES = (CLIENT, ADMIN)
SCHEME = "sha256:"
TOKEN_MAX_CHARS = 512
NAME_MAX_CHARS = 64
AUTHORIZATION = "authorization"  # gRPC metadata key (lower case, as gRPC requires)
HOW_TO_PASS = (
    "pass a token with --token TOKEN or --token-file PATH (or set I2V_TOKEN / I2V_TOKEN_FILE); an "
    "operator makes one with `i2v token new --name NAME`"
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_HEX = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == ADMIN


OPEN = Principal("", ADMIN)  # every caller while authentication is off


def hash_token(token: str) -> str:
    """The tokens-file form of `token`: "sha256:" and the hex digest of its UTF-8 bytes."""
    return SCHEME + hashlib.sha256(token.encode()).hexdigest()


def token_line(token: str, name: str, role: str = CLIENT) -> str:
    """The tokens-file line for `token`; ValueError on a bad name or role."""
    problem = name_problem(name) or ("" if role in ROLES else f"role {role!r} is not one of {ROLES}")
    if problem:
        raise ValueError(problem)
    return f"{hash_token(token)} {name} {role}"


def name_problem(name: str) -> str:
    if not name or len(name) > NAME_MAX_CHARS or not _NAME.fullmatch(name):
        return (
            f"client name {name[:NAME_MAX_CHARS]!r} is not allowed: 1-{NAME_MAX_CHARS} letters, digits, "
            "'.', '_', '@' or '-', starting with a letter or digit"
        )
    return ""


@dataclass(frozen=True)
class TokenTable:
    """A parsed tokens file: digest (hex) -> principal, and what was wrong with the other lines."""

    principals: Mapping[str, Principal]
    problems: tuple[str, ...] = ()


def _line_problem(fields: list[str], seen: Mapping[str, Principal]) -> str:
    if len(fields) != 3:
        return f"has {len(fields)} fields; expected `sha256:<hex> <client-name> <role>`"
    digest, name, role = fields
    if not digest.startswith(SCHEME) or not _HEX.fullmatch(digest[len(SCHEME) :]):
        return (
            "the first field is not sha256: and 64 lower-case hex digits (the token's hash, never the token)"
        )
    if role not in ROLES:
        return f"role {role[:20]!r} is not one of {', '.join(ROLES)}"
    if digest[len(SCHEME) :] in seen:
        return "repeats the hash of an earlier line"
    return name_problem(name)


def parse_tokens(text: str) -> TokenTable:
    """The valid lines of a tokens file; each bad line is skipped and reported by its number (the
    line itself is never repeated: it may hold a secret pasted by mistake)."""
    principals: dict[str, Principal] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        problem = _line_problem(fields, principals)
        if problem:
            problems.append(f"line {number} {problem}")
            continue
        principals[fields[0][len(SCHEME) :]] = Principal(fields[1], fields[2])
    return TokenTable(principals, tuple(problems))


def bearer_token(values: Iterable[str]) -> tuple[str, str]:
    """(token, "") from the authorization metadata values, or ("", why there is none usable)."""
    given = list(values)
    if not given:
        return "", f"no token given: {HOW_TO_PASS}"
    if len(given) > 1:
        return "", "more than one authorization header; send exactly one `authorization: Bearer <token>`"
    scheme, _, token = given[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return "", "the authorization header is not `Bearer <token>`; " + HOW_TO_PASS
    if len(token) > TOKEN_MAX_CHARS or not _TOKEN.fullmatch(token):
        return "", f"the token is not 1-{TOKEN_MAX_CHARS} printable ASCII characters; {HOW_TO_PASS}"
    return token, ""


def match(token: str, table: TokenTable) -> Principal | None:
    """The principal whose stored hash is `token`'s: one lookup, whatever the table's size. Timing
    can tell a caller only about the hash of its own guess, which says nothing about the tokens."""
    return table.principals.get(hashlib.sha256(token.encode()).hexdigest())


class Action(enum.StrEnum):
    GET = "get"
    WATCH = "watch"
    DOWNLOAD = "download"
    CANCEL = "cancel"
    SUBMIT = "submit"  # a request id that names an existing job


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def job_access(who: Principal, action: Action, owner: str | None) -> Decision:
    """May `who` `action` a job owned by `owner` (None: no such job)? Refusals read the same for a
    missing job and another client's, so the reason may be logged but never sent."""
    if who.admin:
        return Decision(True, "admin")
    if owner is None:
        return Decision(False, f"{who.name} asked to {action} a job that does not exist")
    if owner != who.name:
        return Decision(False, f"{who.name} asked to {action} a job of another client")
    return Decision(True, "owner")


def denied_message(job_id_text: str, who: Principal) -> str:
    """The one PERMISSION_DENIED message for a job a client may not touch (missing or not its own)."""
    return (
        f"client {who.name} has no job {job_id_text}: it may not exist, may have been removed by "
        "retention, or belongs to another client (a client sees only the jobs it submitted)"
    )


def fleet_access(who: Principal) -> Decision:
    """ClusterStatus and ListNodes show the whole fleet and its queue: admins only."""
    if who.admin:
        return Decision(True, "admin")
    return Decision(False, f"{who.name} is a client; the fleet view needs an admin token")


def list_owner(who: Principal) -> str | None:
    """Whose jobs a listing shows: None = everyone's (admins), else the caller's own."""
    return None if who.admin else who.name


@dataclass(frozen=True)
class Bucket:
    """A token bucket: `tokens` available as of `at` (seconds on a monotonic clock)."""

    tokens: float
    at: float


@dataclass(frozen=True)
class RateLimit:
    per_s: float  # 0 = no limit
    burst: int


def take(bucket: Bucket | None, now: float, limit: RateLimit) -> tuple[Bucket, float]:
    """(the bucket after one submit, 0.0) when allowed, else (the bucket unchanged but refilled to
    `now`, seconds until one token is there)."""
    burst = max(1, limit.burst)
    if limit.per_s <= 0:
        return bucket or Bucket(float(burst), now), 0.0
    if bucket is None:
        bucket = Bucket(float(burst), now)
    tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.at) * limit.per_s)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / limit.per_s


def rate_message(who: Principal, limit: RateLimit, wait_s: float) -> str:
    return (
        f"client {who.name or '(all callers)'} is over the submit rate (--submit-rate {limit.per_s:g} "
        f"per second, --submit-burst {max(1, limit.burst)}); retry in {wait_s:.1f} s"
    )


def quota_message(who: Principal, queued: int, limit: int) -> str:
    return (
        f"client {who.name or '(all callers)'} has {queued} jobs queued, its quota "
        f"(--max-queued-per-client {limit}); wait for some to start or cancel one, then retry"
    )


def over_quota(queued: int, limit: int) -> bool:
    """Whether one more queued job would exceed `limit` (0 = no limit)."""
    return limit > 0 and queued >= limit


def streams_message(who: Principal, open_streams: int, limit: int) -> str:
    return (
        f"client {who.name or '(all callers)'} has {open_streams} Watch/Generate/Download streams open "
        f"on this coordinator, its limit (--max-streams-per-client {limit}); close one and retry"
    )
