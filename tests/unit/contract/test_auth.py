"""i2v_contract.auth: the tokens file, bearer metadata, ownership decisions and the submit bucket."""

from __future__ import annotations

import hashlib

import pytest

from i2v_contract import auth
from i2v_contract.auth import ADMIN, CLIENT, OPEN, Action, Bucket, Principal, RateLimit

TOKEN = "s3cret-Token_value"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
ALICE, BOB, ROOT = Principal("alice", CLIENT), Principal("bob", CLIENT), Principal("root", ADMIN)


def test_a_token_line_holds_the_hash_never_the_token() -> None:
    line = auth.token_line(TOKEN, "alice")
    assert line == f"sha256:{DIGEST} alice client"
    assert TOKEN not in line
    assert auth.match(TOKEN, auth.parse_tokens(line)) == ALICE


@pytest.mark.parametrize(
    ("name", "role"),
    [
        pytest.param("bad name", CLIENT, id="space-in-name"),
        pytest.param("", CLIENT, id="empty-name"),
        pytest.param("x" * 65, CLIENT, id="name-too-long"),
        pytest.param("alice", "root", id="unknown-role"),
    ],
)
def test_a_token_line_refuses_bad_names_and_roles(name: str, role: str) -> None:
    with pytest.raises(ValueError):
        auth.token_line(TOKEN, name, role)


def test_the_tokens_file_keeps_good_lines_and_numbers_the_bad_ones_without_echoing_them() -> None:
    text = "\n".join(
        [
            "# operators",
            f"sha256:{DIGEST} alice client  # laptop",
            "",
            f"{TOKEN} bob client",  # the token pasted instead of its hash
            f"sha256:{'a' * 64} carol",
            f"sha256:{'b' * 64} dave superuser",
            f"sha256:{DIGEST} mallory admin",  # the same hash again
            f"sha256:{'c' * 64} root admin",
            f"sha256:{'d' * 64} alice client",  # a second token for alice (rotation)
        ]
    )
    table = auth.parse_tokens(text)
    assert sorted((p.name, p.role) for p in table.principals.values()) == [
        ("alice", CLIENT),
        ("alice", CLIENT),
        ("root", ADMIN),
    ]
    assert [p.split(" ", 2)[:2] for p in table.problems] == [
        ["line", "4"],
        ["line", "5"],
        ["line", "6"],
        ["line", "7"],
    ]
    assert not any(TOKEN in p for p in table.problems)


@pytest.mark.parametrize(
    ("values", "token", "problem"),
    [
        pytest.param([f"Bearer {TOKEN}"], TOKEN, "", id="bearer"),
        pytest.param([f"bearer   {TOKEN} "], TOKEN, "", id="scheme-any-case-spaces-trimmed"),
        pytest.param([], "", "no token given", id="none"),
        pytest.param(["Bearer a", "Bearer b"], "", "more than one", id="two-headers"),
        pytest.param([f"Basic {TOKEN}"], "", "not `Bearer <token>`", id="other-scheme"),
        pytest.param(["Bearer"], "", "not `Bearer <token>`", id="scheme-only"),
        pytest.param(["Bearer " + "x" * 513], "", "printable ASCII", id="too-long"),
        pytest.param(["Bearer tok\u00e9n"], "", "printable ASCII", id="not-ascii"),
    ],
)
def test_bearer_metadata(values: list[str], token: str, problem: str) -> None:
    got, why = auth.bearer_token(values)
    assert got == token
    assert problem in why
    if problem:
        assert "--token" in why or "exactly one" in why  # says how to pass one


def test_an_unknown_token_matches_nobody() -> None:
    table = auth.parse_tokens(auth.token_line(TOKEN, "alice"))
    assert auth.match(TOKEN + "x", table) is None
    assert auth.match("", table) is None


@pytest.mark.parametrize(
    ("who", "owner", "allowed"),
    [
        pytest.param(ALICE, "alice", True, id="owner"),
        pytest.param(ALICE, "bob", False, id="another-clients-job"),
        pytest.param(ALICE, None, False, id="missing-job"),
        pytest.param(ALICE, "", False, id="job-from-before-tokens"),
        pytest.param(ROOT, "bob", True, id="admin-any-job"),
        pytest.param(ROOT, None, True, id="admin-missing-job-is-not-found-later"),
        pytest.param(OPEN, "", True, id="no-authentication"),
        pytest.param(OPEN, "bob", True, id="no-authentication-any-owner"),
    ],
)
@pytest.mark.parametrize("action", list(Action))
def test_job_access(who: Principal, owner: str | None, allowed: bool, action: Action) -> None:
    decision = auth.job_access(who, action, owner)
    assert decision.allowed is allowed
    assert decision.reason


def test_the_refusal_reads_the_same_for_a_missing_and_a_foreign_job() -> None:
    missing = auth.job_access(ALICE, Action.GET, None)
    foreign = auth.job_access(ALICE, Action.GET, "bob")
    assert missing.reason != foreign.reason  # the log may say which ...
    assert auth.denied_message("'j1'", ALICE) == auth.denied_message("'j1'", ALICE)  # ... the caller not
    assert "'j1'" in auth.denied_message("'j1'", ALICE)


@pytest.mark.parametrize(
    ("who", "fleet", "owner"),
    [
        pytest.param(ALICE, False, "alice", id="client"),
        pytest.param(ROOT, True, None, id="admin"),
        pytest.param(OPEN, True, None, id="no-authentication"),
    ],
)
def test_fleet_view_and_listing(who: Principal, fleet: bool, owner: str | None) -> None:
    assert auth.fleet_access(who).allowed is fleet
    assert auth.list_owner(who) == owner


@pytest.mark.parametrize(
    ("bucket", "now", "limit", "tokens_after", "wait_s"),
    [
        pytest.param(None, 0.0, RateLimit(1.0, 3), 2.0, 0.0, id="first-submit-full-burst"),
        pytest.param(Bucket(0.0, 0.0), 0.0, RateLimit(2.0, 3), 0.0, 0.5, id="empty-waits-for-one"),
        pytest.param(Bucket(0.0, 0.0), 0.25, RateLimit(2.0, 3), 0.5, 0.25, id="half-refilled"),
        pytest.param(Bucket(0.0, 0.0), 0.5, RateLimit(2.0, 3), 0.0, 0.0, id="refilled-one"),
        pytest.param(Bucket(1.0, 0.0), 100.0, RateLimit(2.0, 3), 2.0, 0.0, id="refill-capped-at-burst"),
        pytest.param(Bucket(0.0, 5.0), 4.0, RateLimit(1.0, 1), 0.0, 1.0, id="clock-backwards-adds-none"),
        pytest.param(Bucket(0.0, 0.0), 0.0, RateLimit(0.0, 0), 0.0, 0.0, id="no-limit"),
    ],
)
def test_submit_bucket(
    bucket: Bucket | None, now: float, limit: RateLimit, tokens_after: float, wait_s: float
) -> None:
    after, wait = auth.take(bucket, now, limit)
    assert after.tokens == pytest.approx(tokens_after)
    assert wait == pytest.approx(wait_s)


def test_a_burst_then_the_rate() -> None:
    limit, bucket, now, allowed = RateLimit(2.0, 4), None, 0.0, 0
    for _ in range(40):  # 10 s of a submit every 0.25 s: 4 at once, then 2 per second
        bucket, wait = auth.take(bucket, now, limit)
        allowed += wait == 0
        now += 0.25
    assert allowed == 4 + 2 * 10 - 1  # the burst, then one per 0.5 s after it ran out


@pytest.mark.parametrize(
    ("queued", "limit", "over"),
    [
        pytest.param(0, 0, False, id="no-limit"),
        pytest.param(1000, 0, False, id="no-limit-many"),
        pytest.param(2, 3, False, id="below"),
        pytest.param(3, 3, True, id="at"),
    ],
)
def test_queued_quota(queued: int, limit: int, over: bool) -> None:
    assert auth.over_quota(queued, limit) is over


def test_limit_messages_name_the_flag() -> None:
    assert "--submit-rate 2" in auth.rate_message(ALICE, RateLimit(2.0, 4), 0.5)
    assert "--max-queued-per-client 3" in auth.quota_message(ALICE, 3, 3)
    assert "--max-streams-per-client 2" in auth.streams_message(ALICE, 2, 2)
