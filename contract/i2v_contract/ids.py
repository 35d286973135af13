"""Ids and names that arrive from callers: one rule each, checked before any work, and `quote`, the
one way a message shows caller input (bounded, so an error never echoes megabytes back).

A job id is the request id a client chose, or the coordinator's uuid4 hex: 1-128 letters, digits,
'.', '_' or '-', starting with a letter or digit. Every job ever stored was admitted under this
rule, so an id outside it names no job and is INVALID_ARGUMENT, not NOT_FOUND (and never reaches an
etcd key builder). A model name is what nodes advertise: a short name, a hub id or a path.
"""

from __future__ import annotations

import re

from i2v_contract.limits import DEFAULT_LIMITS, FieldError

JOB_ID_MAX_CHARS = 128
MODEL_MAX_CHARS = DEFAULT_LIMITS.max_model_chars  # the one cap, also checked where requests are normalised
QUOTE_MAX_CHARS = 64  # caller input shown in a message is cut here, with "…" and its length

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_JOB_ID_RULE = (
    f"1-{JOB_ID_MAX_CHARS} letters, digits, '.', '_' or '-' starting with a letter or digit "
    "(a uuid4 hex is ideal)"
)


def quote(value: str, limit: int = QUOTE_MAX_CHARS) -> str:
    """repr(value), cut to its first `limit` characters with "…" and the full length when longer."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def clip(text: str, limit: int = QUOTE_MAX_CHARS) -> str:
    """`text` as is, cut to its first `limit` characters with "…" and the full length when longer."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def job_id_problem(value: str) -> str:
    """Why `value` is not a job id ("" when it is one)."""
    if not value:
        return "is empty"
    if len(value) > JOB_ID_MAX_CHARS:
        return f"{quote(value)} is longer than {JOB_ID_MAX_CHARS} characters"
    if not _JOB_ID.fullmatch(value):
        return f"{quote(value)} is not allowed"
    return ""


def check_job_id(field: str, value: str) -> None:
    """A job id field (WatchRequest.job_id, ...): FieldError naming `field` unless `value` is one."""
    problem = job_id_problem(value)
    if problem:
        raise FieldError(
            field, f"{problem}; job ids are {_JOB_ID_RULE}: pass the SubmitResponse.job_id or your request_id"
        )


def check_request_id(value: str) -> None:
    """SubmitRequest.request_id: empty (the coordinator makes one) or a job id."""
    problem = job_id_problem(value) if value else ""
    if problem:
        raise FieldError("request_id", f"{problem}; use {_JOB_ID_RULE}, or leave it empty")


def check_model_name(value: str) -> None:
    """GenerationRequest.model: empty (whatever nodes serve) or a printable name without spaces."""
    if len(value) > MODEL_MAX_CHARS:
        raise FieldError("model", f"{quote(value)} is longer than {MODEL_MAX_CHARS} characters")
    if any(not c.isprintable() or c.isspace() for c in value):
        raise FieldError(
            "model", f"{quote(value)} holds a space or control character; send a model name nodes advertise"
        )
