"""Every hostile call's outcome, checked as it comes back and counted by server and status code.

A call may be refused with any status a user can act on, but never INTERNAL or UNKNOWN (a bug, or an
exception that escaped a handler), and an INVALID_ARGUMENT must say which field is wrong: a BadRequest
field violation whose field its message names, or, for bytes that are not the request message at
all, a message naming the message type it expected.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import grpc

from i2v_common.errors import details_of

NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
UNPARSED_SAYS = "request bytes are not a valid "


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.tests: set[str] = set()
        self.notes: dict[str, object] = {}  # other figures for the report (log growth)
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def ok(self, server: str, test: str, what: str = "OK") -> None:
        self._count(server, test, what)

    def error(self, server: str, test: str, err: grpc.RpcError, sent: object = None) -> None:
        """Count a failed call, after checking its status is one a caller can act on."""
        call: grpc.Call = err  # type: ignore[assignment]
        code, message = call.code(), call.details() or ""
        assert code not in NEVER, f"{server} answered {code.name} ({message}) to {sent!r:.300}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert_names_field(err, message, sent)
        self._count(server, test, code.name)

    def _count(self, server: str, test: str, what: str) -> None:
        with self._lock:
            self.counts[(server, what)] += 1
            self.tests.add(test)

    def summary(self) -> dict[str, object]:
        by_code: Counter[str] = Counter()
        for (_, what), n in self.counts.items():
            by_code[what] += n
        per_server = {f"{s} {w}": n for (s, w), n in sorted(self.counts.items())}
        by = {"by_code": dict(by_code.most_common()), "by_server": per_server}
        return {"requests": self.total, **by, **self.notes}

    def lines(self) -> list[str]:
        s = self.summary()
        out = [f"hostile requests: {s['requests']}"]
        out += [f"  {code}: {n}" for code, n in s["by_code"].items()]  # type: ignore[attr-defined]
        out += [f"  {key}: {n}" for key, n in s["by_server"].items()]  # type: ignore[attr-defined]
        out += [f"{key}: {value}" for key, value in self.notes.items()]
        return out

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")


def assert_names_field(err: grpc.RpcError, message: str, sent: object) -> None:
    if UNPARSED_SAYS in message:
        return
    violations = details_of(err).field_violations
    assert violations, f"INVALID_ARGUMENT without a field violation: {message!r} for {sent!r:.300}"
    for violation in violations:
        assert violation.field and violation.field in message, (
            f"INVALID_ARGUMENT names field {violation.field!r} but its message does not: {message!r}"
        )
