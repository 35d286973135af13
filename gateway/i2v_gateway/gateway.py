"""What every route shares: the cluster client, the watches, metrics, limits and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from i2v_common.tls import ClientTls
from i2v_contract.limits import DEFAULT_LIMITS, Limits
from i2v_gateway.cluster import Cluster, bearer
from i2v_gateway.middleware import Metrics
from i2v_gateway.watch import Watches

STATIC_DIR = Path(__file__).with_name("static")


@dataclass
class Settings:
    targets: str
    max_body_bytes: int = DEFAULT_LIMITS.max_image_bytes * 4 // 3 + 1024 * 1024  # base64 in JSON, and room
    max_streams: int = 1000
    cors_origins: tuple[str, ...] = ()
    static_dir: Path = STATIC_DIR
    heartbeat_s: float = 15.0  # an SSE comment this often keeps proxies from closing a quiet stream
    tls: ClientTls | None = None  # how the coordinators are reached (None: plaintext)


@dataclass
class Gateway:
    settings: Settings
    cluster: Cluster
    watches: Watches
    metrics: Metrics = field(default_factory=Metrics)
    limits: Limits = DEFAULT_LIMITS
    draining: bool = False
    streams: int = 0

    @classmethod
    def start(cls, settings: Settings) -> Gateway:
        cluster = Cluster(settings.targets, tls=settings.tls)
        return cls(settings, cluster, Watches(cluster.client_for))

    def drain(self) -> None:
        """SIGTERM: not ready any more, and every event stream ends now (clients reconnect elsewhere)."""
        self.draining = True
        self.metrics.draining.set(1)
        self.watches.close_all()

    def close(self) -> None:
        self.watches.close_all()
        self.cluster.close()


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def caller(request: Request) -> tuple[Gateway, str | None]:
    """The gateway and the caller's bearer token (None without one)."""
    return gateway(request), bearer(request.headers.get("authorization"))
