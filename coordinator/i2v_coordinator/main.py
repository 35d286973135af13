"""`i2v-coordinator`: one member of the control plane; any number may run, one leads.

Life: listen (health SERVING once started: a standby is healthy, it forwards job calls to the
leader; `i2v.v1.Coordinator.Leader` is SERVING on the leader only, entry.py) -> register under
members/{id} and run the election -> on SIGTERM/SIGINT:
NOT_SERVING, stop accepting, drain open streams for --drain-grace seconds, resign (revoke the lease,
which deletes the leader key so a standby campaigns at once), exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from i2v_common import keepalive
from i2v_common.artifacts import ArtifactError, ArtifactStore, open_store
from i2v_common.channels import ChannelFactory
from i2v_common.etcd_kv import EtcdKV
from i2v_common.etcd_security import (
    EtcdSecurity,
    EtcdSecurityError,
    add_etcd_security_args,
    etcd_security_from_args,
)
from i2v_common.kv_metrics import TimedKV
from i2v_common.logs import setup_logging
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_common.serving import MetricsHttp, RpcServer
from i2v_common.store_identity import StoreMismatch, publish
from i2v_common.tls import ClientTls, ServerTls, TlsConfigError, add_server_flags, coordinator_tls, named
from i2v_contract.addresses import advertise, parse_address, parse_endpoints
from i2v_contract.keys import DEFAULT_PREFIX, Keys
from i2v_contract.kv import KVDenied, KVUnavailable
from i2v_coordinator import authflags
from i2v_coordinator.dispatcher import DispatchConfig, Dispatcher
from i2v_coordinator.election import ElectionTimings
from i2v_coordinator.entry import SERVICE, FrontDoor, publish_leader_health
from i2v_coordinator.etcdhealth import EtcdHealth
from i2v_coordinator.jobs import JobView
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.leadership import Leadership
from i2v_coordinator.looplag import monitor_loop_lag
from i2v_coordinator.members import DuplicateMember
from i2v_coordinator.metrics import CoordinatorMetrics
from i2v_coordinator.nodecalls import GrpcNodeCalls
from i2v_coordinator.progress import ProgressHub
from i2v_coordinator.registry import NodeRegistry
from i2v_coordinator.retention import DEFAULT_MAX_AGE_S, DEFAULT_MAX_JOBS, RetentionPolicy, parse_duration
from i2v_coordinator.servicer import CoordinatorServicer
from i2v_coordinator.sweeper import RetentionSweeper

log = logging.getLogger("i2v_coordinator")

MIB = 1024 * 1024
_START_RETRY_S = 1.0


@dataclass(frozen=True)
class CoordinatorConfig:
    etcd: tuple[str, ...]
    listen: str
    metrics_listen: str
    artifacts: str
    member_id: str
    advertise: str  # "" = derived from the bound listen address
    prefix: str
    lease_ttl: float
    max_queue: int
    max_attempts: int
    drain_grace_s: float
    log_level: str
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_interval_s: float = 60.0
    access: authflags.AccessConfig = field(default_factory=authflags.AccessConfig)
    tls: ServerTls | None = None  # its client port; None = plaintext
    peer_tls: ClientTls | None = None  # its calls to peer coordinators (forwarding)
    node_tls: ClientTls | None = None  # its calls to nodes
    etcd_security: EtcdSecurity = field(default_factory=EtcdSecurity)


def timings_for_ttl(ttl_s: float) -> ElectionTimings:
    """The defaults (ttl 5, keepalive 1, margin and call timeout 1.5; docs/architecture.md, timings)
    scaled to any TTL."""
    margin = round(ttl_s * 0.3, 3)
    return ElectionTimings(ttl_s=ttl_s, keepalive_s=ttl_s / 5, call_timeout_s=margin, margin_s=margin)


def _positive(kind: type[int] | type[float], what: str) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{what} must be > 0, got {text!r}")
        return value

    return parse


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0 = no limit), got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None = None) -> CoordinatorConfig:
    p = argparse.ArgumentParser(prog="i2v-coordinator", description=__doc__.splitlines()[0])
    p.add_argument("--etcd", required=True, help="etcd endpoints, comma-separated host:port")
    p.add_argument("--listen", required=True, help="client gRPC address, host:port (port 0 = any free)")
    p.add_argument("--metrics-listen", required=True, help="Prometheus /metrics address, host:port")
    p.add_argument("--artifacts", required=True, help="artifact store: a directory, file:// or s3:// URL")
    p.add_argument("--id", default="", help="unique coordinator id (default: hostname-port)")
    p.add_argument("--advertise", default="", help="address clients and peers use (default: --listen)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="etcd key prefix (starts and ends with /)")
    p.add_argument("--lease-ttl", type=_positive(float, "--lease-ttl"), default=5.0, help="seconds")
    p.add_argument("--max-queue", type=_positive(int, "--max-queue"), default=DispatchConfig.max_queue)
    p.add_argument(
        "--max-attempts", type=_positive(int, "--max-attempts"), default=DispatchConfig.max_attempts
    )
    p.add_argument(
        "--drain-grace", type=float, default=0.25, help="seconds open streams get on SIGTERM (default 0.25)"
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--retention-max-age",
        type=_duration,
        default=DEFAULT_MAX_AGE_S,
        help="keep finished jobs (record, input image, video) this long: 7d, 12h, 30m or seconds; "
        "0 = no age limit (default 7d)",
    )
    p.add_argument(
        "--retention-max-jobs",
        type=_count,
        default=DEFAULT_MAX_JOBS,
        help=f"keep at most this many finished jobs, newest first; 0 = no limit (default {DEFAULT_MAX_JOBS})",
    )
    p.add_argument(
        "--retention-interval",
        type=_duration,
        default=60.0,
        help="how often the leader sweeps finished jobs past retention (default 60s; sooner while a "
        "full batch was due)",
    )
    authflags.add_arguments(p)
    add_server_flags(p, peer_ca=True)
    add_etcd_security_args(p.add_argument_group("etcd security (TLS, authentication)"))
    a = p.parse_args(argv)
    try:
        tls, peer_tls = coordinator_tls(a.tls_cert, a.tls_key, a.tls_client_ca, a.tls_ca)
        node_tls = named(peer_tls, a.tls_node_name, "--tls-node-name")
        peer_tls = named(peer_tls, a.tls_peer_name, "--tls-peer-name")
        etcd_security = etcd_security_from_args(a)
    except (TlsConfigError, EtcdSecurityError) as err:
        p.error(str(err))
    if not a.retention_interval > 0:
        p.error(f"--retention-interval must be > 0, got {a.retention_interval:g}")
    try:
        endpoints = tuple(parse_endpoints(a.etcd, tls=etcd_security.tls))
        Keys(a.prefix)
        timings_for_ttl(a.lease_ttl)
        for addr in (a.listen, a.metrics_listen, *([a.advertise] if a.advertise else [])):
            parse_address(addr)
    except ValueError as err:
        p.error(str(err))
    if a.lease_ttl < 1:
        p.error(f"--lease-ttl must be >= 1 s (etcd's minimum lease TTL), got {a.lease_ttl}")
    if "/" in a.id:
        p.error(f"--id {a.id!r} must not contain '/'")
    return CoordinatorConfig(
        etcd=endpoints,
        listen=a.listen,
        metrics_listen=a.metrics_listen,
        artifacts=a.artifacts,
        member_id=a.id,
        advertise=a.advertise,
        prefix=a.prefix,
        lease_ttl=a.lease_ttl,
        max_queue=a.max_queue,
        max_attempts=a.max_attempts,
        drain_grace_s=max(0.0, a.drain_grace),
        log_level=a.log_level,
        retention=RetentionPolicy(a.retention_max_age, a.retention_max_jobs),
        retention_interval_s=a.retention_interval,
        access=authflags.from_args(a),
        tls=tls,
        peer_tls=peer_tls,
        node_tls=node_tls,
        etcd_security=etcd_security,
    )


class StartupError(RuntimeError):
    """The coordinator cannot start (store unreachable, port in use); the message says why."""


async def serve(config: CoordinatorConfig) -> int:
    """Run one coordinator until SIGTERM/SIGINT: 0 after a clean stop, 2 when it cannot start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with contextlib.AsyncExitStack() as cleanup:
            return await _run(config, stop, cleanup)
    except StartupError as err:
        log.error("%s", err)
        return 2


@dataclass(frozen=True)
class _Edges:
    """What the process opens before it talks to etcd: the artifact store and its two listeners."""

    artifacts: ArtifactStore
    rpc: RpcServer
    addr: str  # advertised to clients and peers
    member_id: str


def _open_edges(
    config: CoordinatorConfig, metrics: CoordinatorMetrics, cleanup: contextlib.AsyncExitStack
) -> _Edges:
    try:
        artifacts = open_store(config.artifacts)
    except (ArtifactError, OSError) as err:
        raise StartupError(f"cannot open artifact store {config.artifacts}: {err}") from None
    options = [("grpc.max_receive_message_length", 64 * MIB), *keepalive.SERVER_OPTIONS]
    rpc = RpcServer(SERVICE, options, [metrics.rpc.interceptor()])
    try:
        port = parse_address(rpc.bind(config.listen, config.tls))[1]
    except (RuntimeError, TlsConfigError) as err:
        raise StartupError(f"cannot listen on {config.listen}: {err}") from None
    member_id = config.member_id or f"{socket.gethostname()}-{port}"
    cleanup.callback(log.info, "coordinator %s stopped", member_id)
    cleanup.push_async_callback(rpc.stop, 0)
    try:
        metrics_http = MetricsHttp(metrics.registry, config.metrics_listen)
    except OSError as err:
        raise StartupError(f"cannot serve metrics on {config.metrics_listen}: {err}") from None
    cleanup.callback(metrics_http.close)
    addr = config.advertise or advertise(config.listen, port, socket.gethostname())
    return _Edges(artifacts, rpc, addr, member_id)


@dataclass(frozen=True)
class _ControlPlane:
    kv: TimedKV
    registry: NodeRegistry
    leadership: Leadership
    dispatcher: Dispatcher
    servicer: CoordinatorServicer
    door: FrontDoor


def _control_plane(
    config: CoordinatorConfig, edges: _Edges, metrics: CoordinatorMetrics, cleanup: contextlib.AsyncExitStack
) -> _ControlPlane:
    """The etcd clients, node table, election, dispatcher, sweeper and API, wired; nothing started."""
    keys = Keys(config.prefix)
    timings = timings_for_ttl(config.lease_ttl)
    etcd = EtcdHealth(config.etcd)  # both clients report to it; the lease keepalive every second
    client = partial(EtcdKV, config.etcd, timings.call_timeout_s, security=config.etcd_security)
    log.info("etcd %s: %s", ",".join(config.etcd), config.etcd_security.describe())
    kv = metrics.etcd.wrap(client(), observe=etcd.observe)
    cleanup.push_async_callback(kv.close)
    lease_kv = metrics.etcd.wrap(client(), observe=etcd.observe)
    cleanup.push_async_callback(lease_kv.close)
    try:
        access, dispatch_token = authflags.open_access(config.access, metrics)
    except ValueError as err:
        raise StartupError(str(err)) from None
    calls = GrpcNodeCalls(
        channels=ChannelFactory(config.node_tls),
        metadata=dispatch_token.metadata if dispatch_token else None,
    )
    cleanup.push_async_callback(calls.close)
    registry = NodeRegistry(kv, keys)
    cleanup.push_async_callback(registry.stop)
    leadership = Leadership(kv, keys, edges.member_id, edges.addr, timings, lease_kv=lease_kv)
    metrics.track_leadership(lambda: leadership.epoch)
    leadership.on_started_leading(metrics.term_started)
    metrics.watch_nodes(registry.snapshot)
    store = JobStore(kv, keys)
    hub = ProgressHub()
    dispatch = DispatchConfig(max_queue=config.max_queue, max_attempts=config.max_attempts)
    dispatcher = Dispatcher(
        store, leadership, registry, hub, calls, edges.artifacts, config=dispatch, metrics=metrics
    )
    metrics.watch_queue(partial(_queued, store, dispatcher), registry.snapshot)
    metrics.queue_limit(config.max_queue)
    metrics.retention_policy(config.retention.max_age_s, config.retention.max_jobs)
    sweeper = RetentionSweeper(
        store,
        edges.artifacts,
        config.retention,
        dispatcher.output_uri,
        metrics=metrics,
        interval_s=config.retention_interval_s,
    )
    leadership.on_started_leading(sweeper.lead)  # sweeps only while leading, cancelled with the term
    servicer = CoordinatorServicer(
        leadership,
        registry,
        store,
        dispatcher,
        hub,
        edges.artifacts,
        etcd=etcd,
        metrics=metrics,
        access=access,
    )
    door = FrontDoor(leadership, dispatcher, etcd, access, ChannelFactory(config.peer_tls))
    cleanup.push_async_callback(door.forwarder.close)
    return _ControlPlane(kv, registry, leadership, dispatcher, servicer, door)


def _queued(store: JobStore, dispatcher: Dispatcher) -> list[JobView]:
    """The queued jobs while this coordinator leads (its table is current then), else none."""
    return [r.view for r in store.table.queued()] if dispatcher.term is not None else []


async def _run(config: CoordinatorConfig, stop: asyncio.Event, cleanup: contextlib.AsyncExitStack) -> int:
    """Open, wire, start and run the parts; each registers its cleanup as it comes up, and the exit
    stack undoes them in reverse: resign, stop the loops, close the etcd clients, then the listeners."""
    metrics = CoordinatorMetrics()
    edges = _open_edges(config, metrics, cleanup)
    plane = _control_plane(config, edges, metrics, cleanup)
    edges.rpc.add_servicer(
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server, plane.servicer, wrap=plane.door.wrap
    )
    await edges.rpc.start()
    keys = Keys(config.prefix)
    agree = partial(publish, plane.kv, keys, edges.artifacts, config.artifacts)
    try:
        if not await _start(plane.registry, plane.leadership, stop, agree):
            return 0
    except (DuplicateMember, StoreMismatch, KVDenied) as err:
        raise StartupError(str(err)) from None
    cleanup.push_async_callback(_cancel, asyncio.create_task(plane.dispatcher.run(), name="dispatcher"))
    lag = asyncio.create_task(monitor_loop_lag(metrics.loop_lag.observe), name="loop-lag")
    cleanup.push_async_callback(_cancel, lag)
    health = publish_leader_health(plane.leadership.terms(), edges.rpc.set_status)
    cleanup.push_async_callback(_cancel, asyncio.create_task(health, name="leader-health"))
    cleanup.push_async_callback(plane.leadership.resign)
    await edges.rpc.set_serving(True)
    log.info(
        "coordinator %s serving on %s (advertised %s), metrics on %s, etcd %s, lease ttl %g s, "
        "finished jobs %s",
        edges.member_id,
        config.listen,
        edges.addr,
        config.metrics_listen,
        ",".join(config.etcd),
        config.lease_ttl,
        config.retention.describe(),
    )
    await stop.wait()
    log.info("stop requested: draining streams for up to %g s, then resigning", config.drain_grace_s)
    await edges.rpc.set_serving(False)
    await edges.rpc.stop(config.drain_grace_s)
    return 0


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _start(
    registry: NodeRegistry,
    leadership: Leadership,
    stop: asyncio.Event,
    agree_on_store: Callable[[], Awaitable[object]],
) -> bool:
    """Agree on the artifact store, start the node table and the election, retrying while etcd is
    unreachable; False if stopped."""
    while not stop.is_set():
        try:
            await agree_on_store()
            await registry.start()
            await leadership.start()
            return True
        except KVDenied:
            raise
        except KVUnavailable as err:
            log.warning("etcd unreachable at start (%s); retrying in %g s", err, _START_RETRY_S)
            await registry.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _START_RETRY_S)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    setup_logging(config.log_level)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
