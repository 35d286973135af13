"""The SDK's token: sent on every call, a view with another token over the same channels, and the
CLI's token flags and `i2v token new`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from i2v_client import CoordinatorClient
from i2v_client.cli.tokens import resolve_token
from i2v_contract import auth
from i2v_contract.wire import coordinator_pb2
from tests.fakes.client import FakeConnector, FakeStubs, run_cli


class RecordingStub:
    """Answers every method, recording the metadata each call carried."""

    def __init__(self) -> None:
        self.metadata: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        def call(request: Any, **kwargs: Any) -> Any:
            self.metadata.append((name, kwargs.get("metadata")))
            return coordinator_pb2.ListJobsResponse()

        return call


def test_every_call_presents_the_token_and_a_view_presents_its_own_over_the_same_channels() -> None:
    stub = RecordingStub()
    stubs = FakeStubs(stub)
    client = CoordinatorClient(["c:1"], stubs=stubs, token="tok-a")
    client.list_jobs()
    view = client.with_token("tok-b")
    view.list_jobs()
    anonymous = client.with_token(None)
    anonymous.list_jobs()
    view.close()
    assert not stubs.closed  # a view leaves the shared channels open
    client.close()
    assert stubs.closed
    assert stub.metadata == [
        ("ListJobs", (("authorization", "Bearer tok-a"),)),
        ("ListJobs", (("authorization", "Bearer tok-b"),)),
        ("ListJobs", None),  # no token: the stub as it is
    ]


def test_a_token_that_cannot_be_sent_is_refused_before_any_call() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        CoordinatorClient(["c:1"], stubs=FakeStubs(RecordingStub()), token="two words")


@pytest.mark.parametrize(
    ("flags", "env", "token", "source"),
    [
        pytest.param({}, {}, None, "", id="none"),
        pytest.param({"token": "flag"}, {"I2V_TOKEN": "env"}, "flag", "--token", id="flag-first"),
        pytest.param(
            {"token_file": "FILE"}, {"I2V_TOKEN": "env"}, "from-file", "--token-file", id="file-flag"
        ),
        pytest.param({}, {"I2V_TOKEN": "env", "I2V_TOKEN_FILE": "FILE"}, "env", "$I2V_TOKEN", id="env"),
        pytest.param({}, {"I2V_TOKEN_FILE": "FILE"}, "from-file", "$I2V_TOKEN_FILE", id="env-file"),
    ],
)
def test_where_the_clis_token_comes_from(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], token: str | None, source: str
) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    fill = {k: str(path) if v == "FILE" else v for k, v in flags.items()}
    args = argparse.Namespace(**{"token": None, "token_file": None, **fill})
    resolve_token(args, {k: str(path) if v == "FILE" else v for k, v in env.items()})
    assert (args.token, args.token_from) == (token, source)


def test_an_empty_token_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SystemExit) as exit_:
        run_cli(["jobs", "--target", "c:1", "--token-file", str(tmp_path / "empty")], FakeConnector())
    assert exit_.value.code == 2


def test_token_new_prints_a_fresh_token_and_the_line_that_accepts_it() -> None:
    code, out, _ = run_cli(["token", "new", "--name", "alice", "--role", "admin", "--json"], FakeConnector())
    made = json.loads(out)
    table = auth.parse_tokens(made["line"])
    assert code == 0 and made["token"] not in made["line"] and len(made["token"]) >= 43
    assert auth.match(made["token"], table) == auth.Principal("alice", auth.ADMIN)
    _, again, _ = run_cli(["token", "new", "--name", "alice", "--json"], FakeConnector())
    assert json.loads(again)["token"] != made["token"]
    code, _, err = run_cli(["token", "new", "--name", "not ok"], FakeConnector())
    assert code == 2 and "--name" in err
