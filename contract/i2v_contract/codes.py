"""gRPC's canonical status codes as plain numbers, so pure code and etcd records can carry them.

The numbers are fixed by the gRPC spec (statuscodes.md); adapters convert to and from
grpc.StatusCode with `grpc.StatusCode[code.name]` and `Code(status.value[0])`.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def code_of(name: str) -> Code:
    """'RESOURCE_EXHAUSTED' -> Code.RESOURCE_EXHAUSTED; a name gRPC does not define is UNKNOWN."""
    try:
        return Code[name]
    except KeyError:
        return Code.UNKNOWN


def code_name(value: int) -> str:
    """8 -> 'RESOURCE_EXHAUSTED'; a number gRPC does not define is 'UNKNOWN'."""
    try:
        return Code(value).name
    except ValueError:
        return Code.UNKNOWN.name
