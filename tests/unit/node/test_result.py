"""How a job ends: the status code and message for each way an engine run can fail, and the
message-size check on a finished Result."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from i2v_common.artifacts import FileStore
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.job import Cancelled, OutOfMemoryExhausted
from i2v_node.result import classify, failure, store_outputs
from i2v_node.running import CANCEL_RPC, CLAIM_GONE, DEADLINE, DRAIN, Final, RunningJob
from i2v_node.validation import NodeFault


def job(reason: str = "", detail: str = "") -> RunningJob:
    running = RunningJob("j1", node_pb2.NodeGenerateRequest(), 0.0, reason=reason, detail=detail)
    running.last_step = 3
    return running


@pytest.mark.parametrize(
    ("running", "err", "code", "message"),
    [
        pytest.param(
            job(DEADLINE),
            Cancelled("x"),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "deadline passed during job j1 (stopped after step 3); allow more time or request fewer "
            "steps/frames",
            id="deadline",
        ),
        pytest.param(
            job(CLAIM_GONE, "claim /t/claims/j1/1 deleted"),
            Cancelled("x"),
            grpc.StatusCode.UNAVAILABLE,
            "job j1 stopped after step 3: claim /t/claims/j1/1 deleted; no result written",
            id="claim-gone",
        ),
        pytest.param(
            job(DRAIN),
            Cancelled("x"),
            grpc.StatusCode.UNAVAILABLE,
            "node is draining; job j1 was cancelled after the 2.5 s grace period; retry on another node",
            id="drain",
        ),
        pytest.param(
            job(CANCEL_RPC),
            Cancelled("x"),
            grpc.StatusCode.CANCELLED,
            "job j1 was cancelled (cancel_rpc)",
            id="cancel-rpc",
        ),
        pytest.param(
            job(),
            Cancelled("x"),
            grpc.StatusCode.CANCELLED,
            "job j1 was cancelled (by the node)",
            id="no-reason",
        ),
        pytest.param(
            job(),
            OutOfMemoryExhausted("out of GPU memory at denoise ..."),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "out of GPU memory at denoise ...",
            id="oom-exhausted",
        ),
        pytest.param(
            job(),
            NodeFault(grpc.StatusCode.UNAVAILABLE, "store unreachable"),
            grpc.StatusCode.UNAVAILABLE,
            "store unreachable",
            id="node-fault",
        ),
        pytest.param(
            job(),
            ValueError("boom"),
            grpc.StatusCode.INTERNAL,
            "internal error in job j1: ValueError; the node still serves, see its log",
            id="unexpected",
        ),
    ],
)
def test_failure(running: RunningJob, err: Exception, code: grpc.StatusCode, message: str) -> None:
    assert failure(running, err, 2.5) == (code, message)


async def finished(result: common_pb2.Result | None = None, err: Exception | None = None) -> Any:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if err is not None:
        future.set_exception(err)
    elif result is not None:
        future.set_result((result, object()))
    else:
        future.cancel()
    return future


async def test_a_result_within_the_limit_is_ok() -> None:
    result = common_pb2.Result(video=b"v" * 100)
    final = classify(job(), await finished(result), max_result_bytes=1000, drain_grace_seconds=0)
    assert final == Final(grpc.StatusCode.OK, "", result)


async def test_a_result_over_the_message_limit_is_resource_exhausted() -> None:
    result = common_pb2.Result(video=b"v" * 2000)
    final = classify(job(), await finished(result), max_result_bytes=1000, drain_grace_seconds=0)
    assert final.code == grpc.StatusCode.RESOURCE_EXHAUSTED and final.result is None
    assert final.message == (
        f"result is {result.ByteSize()} bytes, over this node's 1000-byte message limit; "
        "set return_frames=false, or use output_uri"
    )


async def test_an_engine_run_that_never_ran_is_unavailable() -> None:
    final = classify(job(), await finished(), max_result_bytes=1000, drain_grace_seconds=0)
    assert final == Final(grpc.StatusCode.UNAVAILABLE, "node stopped before job j1 ran", None)


async def test_a_failed_run_gets_its_failure() -> None:
    final = classify(
        job(DEADLINE), await finished(err=Cancelled("x")), max_result_bytes=1000, drain_grace_seconds=0
    )
    assert final.code == grpc.StatusCode.DEADLINE_EXCEEDED and final.result is None


def test_stored_outputs_put_the_video_and_frames_beside_it_and_keep_only_their_uris(tmp_path: Any) -> None:
    store = FileStore(tmp_path)
    uri = store.uri_for("jobs/j1/attempt-2.mp4")
    running = RunningJob("j1", node_pb2.NodeGenerateRequest(job_id="j1", attempt=2, output_uri=uri), 0.0)
    result = common_pb2.Result(frames_png=[b"png0", b"png1"], video_size=3)
    store_outputs(store, running, result, b"mp4", "n1")
    assert result.artifact_uri == uri and store.get(uri) == b"mp4" and not result.frames_png
    assert list(result.frame_uris) == [store.uri_for(f"jobs/j1/attempt-2-frame-000{i}.png") for i in (0, 1)]
    assert [store.get(u) for u in result.frame_uris] == [b"png0", b"png1"]


def test_an_unwritable_store_is_the_nodes_fault(tmp_path: Any) -> None:
    store = FileStore(tmp_path)
    uri = store.uri_for("jobs/j1/attempt-1.mp4")
    (tmp_path / "jobs").write_bytes(b"a file where the folder goes")
    running = RunningJob("j1", node_pb2.NodeGenerateRequest(job_id="j1", attempt=1, output_uri=uri), 0.0)
    with pytest.raises(NodeFault) as fault:
        store_outputs(store, running, common_pb2.Result(), b"mp4", "n1")
    assert fault.value.code == grpc.StatusCode.UNAVAILABLE and "could not write the outputs of job j1" in str(
        fault.value.message
    )
