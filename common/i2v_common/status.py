"""Conversion between grpc.StatusCode and the contract's plain status numbers (i2v_contract.codes)."""

from __future__ import annotations

import grpc

from i2v_contract.codes import Code, code_name


def to_grpc(value: int) -> grpc.StatusCode:
    """A status number (as in JobEvent.error_code) -> grpc.StatusCode; unknown numbers are UNKNOWN."""
    return grpc.StatusCode[code_name(value)]


def from_grpc(code: grpc.StatusCode) -> Code:
    return Code(code.value[0])
