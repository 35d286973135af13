"""Part of an artifact as it arrives: bytes `offset` to `offset + limit` of a job's video (or input
image, or stored frame) through Coordinator.Download, for a server that passes them on (the HTTP
gateway's Range requests). A stream that breaks moves to the next coordinator and asks for the rest
from the byte reached, as `download` does; the header must keep naming the same artifact. The
whole artifact's sha256 cannot be checked on a part: pass the digest the job reported as `sha256`
and a stream serving other bytes is DATA_LOSS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from i2v_client.download import ARTIFACTS
from i2v_client.errors import CallError
from i2v_client.failover import Failover
from i2v_client.streams import IdleWatchdog
from i2v_contract.wire import coordinator_pb2


def _checked(header: coordinator_pb2.DownloadResponse, sha256: str, what: str) -> str:
    if sha256 and header.sha256 and header.sha256 != sha256:
        raise CallError(
            grpc.StatusCode.DATA_LOSS,
            f"{what}: the artifact is {header.sha256[:12]}..., not {sha256[:12]}...; "
            "it changed, fetch it again",
        )
    return header.sha256 or sha256


def read_range(
    failover: Failover,
    job_id: str,
    *,
    offset: int = 0,
    limit: int = 0,
    what: str = "video",
    frame: int = 0,
    sha256: str = "",
) -> Iterator[bytes]:
    """The bytes of `job_id`'s artifact from `offset`, `limit` of them (0 = to the end), in the
    coordinators' chunks."""
    if what not in ARTIFACTS:
        raise ValueError(f"what: {what!r} is not one of {', '.join(ARTIFACTS)}")
    label = f"download {job_id}"
    reconnect = failover.reconnect()
    sent, end = offset, (offset + limit if limit else None)
    while end is None or sent < end:
        request = coordinator_pb2.DownloadRequest(
            job_id=job_id,
            what=ARTIFACTS[what],
            frame=frame,
            offset=sent,
            limit=0 if end is None else end - sent,
        )
        call: Any = failover.connected(reconnect, label).Download(request)
        watchdog = IdleWatchdog(call, failover.policy.idle_timeout_s)
        total: int | None = None
        try:
            with watchdog:
                for message in call:
                    watchdog.touch()
                    reconnect.reset()
                    failover.answered()
                    if total is None:
                        sha256, total = _checked(message, sha256, label), message.total_size
                        end = total if end is None else min(end, total)
                        continue
                    data = message.data  # each read of the field copies the bytes out of the message
                    yield data
                    sent += len(data)
                    watchdog.touch()  # the reader's pace is not the coordinator's silence
        except grpc.RpcError as err:
            lost = failover.target
            if watchdog.fired:
                failover.suspect(lost, f"sent nothing for {failover.policy.idle_timeout_s:g} s on {label}")
                failover.move_on(grpc.StatusCode.UNAVAILABLE, f"{lost} went silent", "", reconnect, label)
            elif err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                failover.rpc_failed(err, reconnect, label)
            else:
                raise CallError.from_rpc(err, lost) from None
        except BaseException:
            call.cancel()
            raise
        else:
            if end is not None and sent < end:
                failover.move_on(
                    grpc.StatusCode.UNAVAILABLE, f"the stream ended after {sent} bytes", "", reconnect, label
                )
