"""Whether this coordinator reaches etcd, from the outcome of its own etcd calls; no I/O.

Every EtcdKV call reports here (`observe`): None when etcd answered, the error when no endpoint did.
The lease keepalive alone makes a call every second, so the latest outcome is at most about a
keepalive plus a call timeout old. etcd counts as unreachable while the latest outcome is a failure;
one success clears it. `error` is then the sentence the client API answers with (ClusterStatus's
`etcd_error`, and UNAVAILABLE on job calls this coordinator would serve itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from i2v_contract.ids import clip

_DETAIL_MAX_CHARS = 300


class EtcdHealth:
    def __init__(self, endpoints: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoints = tuple(endpoints)
        self._clock = clock
        self._failure = ""
        self._failing_since: float | None = None

    def observe(self, error: str | None) -> None:
        if error is None:
            self._failure, self._failing_since = "", None
            return
        self._failure = error
        if self._failing_since is None:
            self._failing_since = self._clock()

    @property
    def error(self) -> str:
        """ "" while the latest etcd call got an answer; otherwise why the coordinator is stuck."""
        if self._failing_since is None:
            return ""
        detail = clip(self._failure, _DETAIL_MAX_CHARS)
        for_s = self._clock() - self._failing_since
        return (
            f"etcd unreachable at {','.join(self.endpoints)} for {for_s:.1f} s ({detail}); "
            "the coordinator cannot read or write jobs"
        )
