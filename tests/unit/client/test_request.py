from __future__ import annotations

import hashlib

import grpc
import pytest

from i2v_client import CallError, build_request, checked
from i2v_contract.wire import common_pb2


def test_build_request_defaults_and_seed() -> None:
    req = build_request(b"img", prompt="a cat")
    assert not req.HasField("seed")
    assert req.width == 0
    assert build_request(b"img", prompt="a cat", seed=0).HasField("seed")


def test_checked_rejects_corrupt_video() -> None:
    good = common_pb2.Result(video=b"abc", sha256=hashlib.sha256(b"abc").hexdigest())
    assert checked(good) is good
    with pytest.raises(CallError) as exc:
        checked(common_pb2.Result(video=b"abd", sha256=good.sha256))
    assert exc.value.code is grpc.StatusCode.DATA_LOSS
