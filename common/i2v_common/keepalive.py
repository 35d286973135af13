"""gRPC keepalive, one setting for every channel and server in the cluster.

Channels (client -> coordinator, coordinator -> node) ping every 10 s, also between calls, and give
a ping 5 s to be answered: a connection that silently stopped forwarding is found in ~15 s instead
of never. Servers permit pings down to every 5 s without counting them as abuse.
"""

from __future__ import annotations

CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
SERVER_OPTIONS = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
)
