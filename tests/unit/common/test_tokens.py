"""i2v_common.tokens: the tokens file at start, reloaded when it changes, and single-token files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from i2v_common.tokens import TokensError, TokensFile, TokenSource, bearer, read_token
from i2v_contract import auth

ALICE, BOB = "alice-token-1", "bob-token-2"


def _write(path: Path, *lines: str) -> None:
    path.write_text("\n".join(lines) + "\n")
    st = path.stat()  # a distinct mtime even within one clock tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _meta(token: str) -> tuple[tuple[str, str], ...]:
    return bearer(token)


@pytest.fixture
def tokens_path(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    _write(path, auth.token_line(ALICE, "alice"), auth.token_line(BOB, "bob", "admin"))
    return path


def test_a_known_token_is_its_principal(tokens_path: Path) -> None:
    tokens = TokensFile(tokens_path)
    assert tokens.authenticate(_meta(ALICE)) == auth.Principal("alice", auth.CLIENT)
    assert tokens.authenticate(_meta(BOB)) == auth.Principal("bob", auth.ADMIN)
    why = tokens.authenticate(_meta("guess"))
    assert isinstance(why, str) and "guess" not in why and "--token" in why
    assert "no token" in str(tokens.authenticate(()))


def test_removing_a_line_refuses_its_token_at_once_and_adding_one_accepts_it(tokens_path: Path) -> None:
    tokens = TokensFile(tokens_path)
    _write(tokens_path, auth.token_line(BOB, "bob", "admin"))
    assert isinstance(tokens.authenticate(_meta(ALICE)), str)
    _write(tokens_path, auth.token_line(BOB, "bob", "admin"), auth.token_line("carol-1", "carol"))
    assert tokens.authenticate(_meta("carol-1")) == auth.Principal("carol", auth.CLIENT)


def test_a_bad_line_on_reload_is_skipped_and_logged_by_number(
    tokens_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = TokensFile(tokens_path)
    with caplog.at_level(logging.INFO, "i2v_common.tokens"):
        _write(tokens_path, f"{ALICE} alice client", auth.token_line(BOB, "bob", "admin"))
        assert isinstance(tokens.authenticate(_meta(ALICE)), str)  # the pasted token is no hash
        assert tokens.authenticate(_meta(BOB)) == auth.Principal("bob", auth.ADMIN)
    assert "line 1" in caplog.text
    assert ALICE not in caplog.text and BOB not in caplog.text


def test_a_file_gone_refuses_every_token_until_it_is_back(tokens_path: Path) -> None:
    tokens = TokensFile(tokens_path)
    tokens_path.unlink()
    assert isinstance(tokens.authenticate(_meta(BOB)), str)
    _write(tokens_path, auth.token_line(BOB, "bob", "admin"))
    assert tokens.authenticate(_meta(BOB)) == auth.Principal("bob", auth.ADMIN)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param(None, "cannot read", id="missing"),
        pytest.param("# nothing yet\n", "holds no tokens", id="empty"),
        pytest.param(f"{ALICE} alice client\n", "line 1", id="bad-line"),
    ],
)
def test_at_start_a_file_that_cannot_be_used_is_an_error(tmp_path: Path, text: str | None, says: str) -> None:
    path = tmp_path / "tokens"
    if text is not None:
        path.write_text(text)
    with pytest.raises(TokensError, match=says) as err:
        TokensFile(path)
    assert ALICE not in str(err.value)


def test_a_token_file_is_read_and_rotated(tmp_path: Path) -> None:
    path = tmp_path / "dispatch"
    path.write_text(f"  {ALICE}\n")
    assert read_token(path) == ALICE
    source = TokenSource(path)
    assert source.metadata() == bearer(ALICE)
    _write(path, BOB)
    assert source.metadata() == bearer(BOB)
    _write(path, "")  # emptied: the last token read goes on (and a warning says why)
    assert source.metadata() == bearer(BOB)
    with pytest.raises(ValueError, match="cannot read"):
        TokenSource(tmp_path / "absent")
