"""The node process's gRPC server: health, reflection, message limits, model load, drain.

Order of life: listen (health NOT_SERVING, so probes answer during a long load) -> load the model
in a thread -> SERVING -> on SIGTERM: NOT_SERVING, refuse new jobs with UNAVAILABLE, let the running
job finish within the drain grace period (then cancel it), stop. A cluster node leaves etcd
between the drain and the stop (see main.py).

Message limits: a request may carry an image up to the limits' byte cap plus 1 MiB for the other
fields. A standalone result's inline MP4 and PNG frames go out in chunks of at most 1 MiB
(chunks.py), so every response message stays under gRPC's default 4 MiB; a whole result may hold
up to 128 MiB, and bigger ones fail with RESOURCE_EXHAUSTED and a hint to use output_uri or drop
return_frames.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from i2v_common import keepalive
from i2v_common.artifacts import ArtifactStore
from i2v_common.rpc import node_pb2_grpc
from i2v_common.serving import MetricsHttp, RpcServer
from i2v_common.tls import TlsConfigError
from i2v_common.tokens import TokensError, TokensFile
from i2v_contract.limits import DEFAULT_LIMITS, Limits
from i2v_contract.tiers import tier_name
from i2v_contract.wire import node_pb2
from i2v_node.access import token_wrap
from i2v_node.config import NodeConfig
from i2v_node.engine import Engine, EngineConfig, parse_fault_plan
from i2v_node.gpu import ProbeError, limit_torch_memory, make_monitor
from i2v_node.hooks import JobHooks
from i2v_node.metrics import NodeMetrics
from i2v_node.servicer import NodeServicer
from i2v_node.validation import default_profile

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MAX_SEND_BYTES = 128 * MIB
NODE_SERVICE = node_pb2.DESCRIPTOR.services_by_name["Node"].full_name


class StartupError(RuntimeError):
    """The node cannot start (address in use, model not loadable); the message says why."""


def engine_config(config: NodeConfig) -> EngineConfig:
    plan = parse_fault_plan(config.fault_inject_oom) if config.fault_inject_oom else None
    if plan is not None:
        log.warning("TESTING: out-of-memory faults will be injected: %s", config.fault_inject_oom)
    return EngineConfig(
        model=config.model,
        device=config.device,
        dtype=config.dtype,
        cache_dir=config.cache_dir,
        offline=config.offline,
        fault_plan=plan,
    )


def dispatchers(config: NodeConfig) -> frozenset[str] | None:
    """The certificate names that may dispatch, when callers must present a certificate; else None."""
    if config.tls is None or config.tls.client_ca is None:
        return None
    return frozenset(config.coordinator_identities)


def max_receive_bytes(limits: Limits) -> int:
    return limits.max_image_bytes + MIB


class NodeServer:
    def __init__(
        self,
        config: NodeConfig,
        *,
        limits: Limits = DEFAULT_LIMITS,
        hooks: JobHooks | None = None,
        artifacts: ArtifactStore | None = None,
        load_engine: Callable[[EngineConfig], Engine] = Engine.load,
    ) -> None:
        self.config = config
        self._load_engine = load_engine
        try:
            self._engine_config = engine_config(config)
            self.monitor = make_monitor(
                config.device,
                max_vram_bytes=config.max_vram_bytes,
                simulate_free_bytes=config.simulate_free_vram_bytes,
                simulate_file=config.simulate_free_vram_file,
            )
            tokens = TokensFile(config.tokens_file) if config.tokens_file else None
        except (ValueError, ProbeError, TokensError) as err:
            raise StartupError(str(err)) from None
        self.metrics = NodeMetrics(self.monitor.read)
        self.servicer = NodeServicer(
            node_id=config.node_id,
            monitor=self.monitor,
            metrics=self.metrics,
            limits=limits,
            max_result_bytes=MAX_SEND_BYTES,
            hooks=hooks,
            artifacts=artifacts,
            dispatchers=dispatchers(config),
        )
        self._rpc = RpcServer(
            NODE_SERVICE,
            [
                ("grpc.max_receive_message_length", max_receive_bytes(limits)),
                ("grpc.max_send_message_length", MAX_SEND_BYTES),
                *keepalive.SERVER_OPTIONS,
            ],
            [self.metrics.rpc.interceptor()],
        )
        wrap = token_wrap(tokens) if tokens is not None else None
        self._rpc.add_servicer(node_pb2_grpc.add_NodeServicer_to_server, self.servicer, wrap=wrap)
        self._metrics_http: MetricsHttp | None = None
        self.address = config.listen

    async def start(self) -> None:
        """Listen with health NOT_SERVING; /metrics up. The model is not loaded yet."""
        try:
            self.address = self._rpc.bind(self.config.listen, self.config.tls)
        except (RuntimeError, TlsConfigError) as err:
            raise StartupError(f"cannot listen on {self.config.listen}: {err}") from None
        await self._rpc.start()
        if self.config.metrics_listen:
            try:
                self._metrics_http = MetricsHttp(self.metrics.registry, self.config.metrics_listen)
            except OSError as err:
                await self._rpc.stop(0)
                raise StartupError(f"cannot serve metrics on {self.config.metrics_listen}: {err}") from None
        log.info(
            "node %s listening on %s, %s (NOT_SERVING until the model is loaded)",
            self.config.node_id,
            self.address,
            transport(self.config),
        )

    async def load(self) -> None:
        """Load the model in a daemon thread (a signal during a long load need not wait for it)."""
        config = self.config
        reading = self.servicer.observe_memory()
        if config.device.startswith("cuda") and config.max_vram_bytes is not None:
            limit_torch_memory(config.device, config.max_vram_bytes, reading.total_bytes)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Engine] = loop.create_future()

        def target() -> None:
            try:
                engine = self._load_engine(self._engine_config)
            except BaseException as err:
                loop.call_soon_threadsafe(_settle_error, done, err)
            else:
                loop.call_soon_threadsafe(_settle, done, engine)

        started = time.monotonic()
        threading.Thread(target=target, name="i2v-load", daemon=True).start()
        try:
            engine = await done
        except Exception as err:
            raise StartupError(f"cannot load model {config.model!r}: {type(err).__name__}: {err}") from err
        load_s = getattr(engine, "load_seconds", None) or time.monotonic() - started
        self.metrics.model_load_seconds.set(load_s)
        self.servicer.set_engine(engine)
        await self._rpc.set_serving(True)
        choice = default_profile(engine, self.servicer.observe_memory(), self.servicer.limits)
        log.info(
            "node %s serving model %s on %s, tier %s, profile %s, load %.1f s",
            config.node_id,
            engine.model_id,
            self.address,
            tier_name(self.servicer.tier),
            choice.profile.name,
            load_s,
        )

    async def drain(self) -> None:
        """NOT_SERVING, refuse new jobs, finish (or after the grace period cancel) the running one."""
        self.servicer.start_drain()
        await self._rpc.set_serving(False)
        finished = await self.servicer.wait_idle(self.config.drain_grace_seconds)
        if not finished:
            log.warning(
                "cancelled the running job: it outlasted the %g s drain grace",
                self.config.drain_grace_seconds,
            )

    async def close(self) -> None:
        """Stop serving gRPC and /metrics; call after drain (and after leaving the cluster)."""
        # A short grace lets the last result message reach its caller.
        await self._rpc.stop(2.0)
        if self._metrics_http is not None:
            self._metrics_http.close()
        self.servicer.close()
        log.info("node %s stopped", self.config.node_id)

    async def stop(self) -> None:
        """Drain, then close: a standalone node's whole shutdown."""
        await self.drain()
        await self.close()


def transport(config: NodeConfig) -> str:
    tls = config.tls
    if tls is None:
        return "plaintext"
    if tls.client_ca is None:
        return "TLS"
    return f"mTLS (dispatches from {', '.join(sorted(config.coordinator_identities))})"


def _settle(future: asyncio.Future[Engine], engine: Engine) -> None:
    if not future.done():
        future.set_result(engine)


def _settle_error(future: asyncio.Future[Engine], err: BaseException) -> None:
    if not future.done():
        future.set_exception(err)
