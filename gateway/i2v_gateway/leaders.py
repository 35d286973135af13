"""Asks the coordinators' health services which of them leads (readiness.py decides what that
means): one channel per address, kept open; every address asked at once, each within `timeout_s`.
Over TLS a resolved IP is verified against the gateway's --tls-server-name, else the name it was
resolved from."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from i2v_client.channels import open_channel
from i2v_common.tls import ClientTls
from i2v_contract.addresses import format_address, parse_address
from i2v_contract.wire import LEADER_HEALTH
from i2v_gateway.readiness import Answer, candidates

log = logging.getLogger(__name__)

Resolver = Callable[[str], list[str]]


def resolve(target: str) -> list[str]:
    """Every address `target`'s host name resolves to, as host:port; [] when it does not resolve."""
    host, port = parse_address(target)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return list(dict.fromkeys(format_address(str(info[4][0]), port) for info in infos))


class Leaders:
    def __init__(
        self,
        targets: Sequence[str],
        tls: ClientTls | None,
        *,
        timeout_s: float = 1.0,
        resolver: Resolver = resolve,
    ) -> None:
        self.targets = list(targets)
        self._tls = tls
        self._timeout = timeout_s
        self._resolve = resolver
        self._channels: dict[str, grpc.Channel] = {}
        self._names: dict[str, str] = {}  # resolved address -> the host name it came from

    def _stub(self, address: str) -> health_pb2_grpc.HealthStub:
        channel = self._channels.get(address)
        if channel is None:
            options: list[tuple[str, str]] = []
            name = self._names.get(address)
            if self._tls is not None and self._tls.server_name is None and name:
                options.append(("grpc.ssl_target_name_override", name))
            channel = self._channels[address] = open_channel(address, options, self._tls)  # type: ignore[arg-type]
        return health_pb2_grpc.HealthStub(channel)

    def addresses(self, hinted: Iterable[str]) -> list[str]:
        resolved: dict[str, list[str]] = {}
        for target in self.targets:
            resolved[target] = self._resolve(target)
            host = parse_address(target)[0]
            for address in resolved[target]:
                if address != target:
                    self._names.setdefault(address, host)
        return candidates(self.targets, resolved, hinted)

    def ask(self, hinted: Iterable[str] = ()) -> dict[str, Answer]:
        """Each address's answer for the leader health name (blocking, at most about `timeout_s`)."""
        request = health_pb2.HealthCheckRequest(service=LEADER_HEALTH)
        calls = {
            a: self._stub(a).Check.future(request, timeout=self._timeout) for a in self.addresses(hinted)
        }
        return {address: _answer(call) for address, call in calls.items()}

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


def _answer(call: grpc.Future) -> Answer:
    try:
        reply = call.result()
    except grpc.RpcError as err:
        code = err.code() if isinstance(err, grpc.Call) else None
        # NOT_FOUND: a coordinator that publishes no leader name; it answered all the same
        return Answer.FOLLOWS if code == grpc.StatusCode.NOT_FOUND else Answer.SILENT
    return Answer.LEADS if reply.status == health_pb2.HealthCheckResponse.SERVING else Answer.FOLLOWS
