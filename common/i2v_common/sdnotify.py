"""systemd's readiness protocol (sd_notify): tell the service manager when a server is ready and
when it begins to stop, so `Type=notify` units order on real readiness. Without $NOTIFY_SOCKET
(not run by systemd) it does nothing."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines ("READY=1", "STOPPING=1", "STATUS=...") to the socket systemd named."""

    def __init__(self, address: str) -> None:
        # An address starting with "@" is in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier | None:
        address = env.get("NOTIFY_SOCKET", "")
        return cls(address) if address else None

    def send(self, *states: str) -> bool:
        """True when systemd's socket took the message; a failure is logged, never raised."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall("\n".join(states).encode())
        except OSError as err:
            log.warning("could not notify systemd (%s): %s", states[0] if states else "", err)
            return False
        return True
