"""The node's settings, parsed from its command line (`i2v-node --help`)."""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from i2v_common.etcd_security import (
    EtcdSecurity,
    add_etcd_security_args,
    etcd_security_from_args,
    given_on_command_line,
)
from i2v_common.tls import ServerTls, TlsConfigError, add_server_flags, server_tls_from
from i2v_contract.addresses import parse_address, parse_endpoints
from i2v_contract.keys import DEFAULT_PREFIX, Keys
from i2v_contract.units import parse_bytes

DEFAULT_COORDINATOR_IDENTITY = "i2v-coordinator"


def default_cache_dir() -> Path:
    env = os.environ.get("I2V_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "i2v-cluster"


@dataclass(frozen=True)
class NodeConfig:
    model: str
    listen: str
    metrics_listen: str | None
    device: str
    dtype: str | None
    cache_dir: Path
    max_vram_bytes: int | None
    simulate_free_vram_bytes: int | None
    simulate_free_vram_file: Path | None
    drain_grace_seconds: float
    node_id: str
    fault_inject_oom: str | None
    log_level: str
    offline: bool
    # Cluster mode (only with etcd endpoints); defaults keep a standalone node.
    etcd: tuple[str, ...] = ()
    advertise: str = ""  # "" = the bound listen address
    artifacts: str = ""  # directory or URL of the artifact store shared with the coordinator
    prefix: str = DEFAULT_PREFIX
    lease_ttl: float = 10.0
    tokens_file: str = ""  # "" = every caller is served (no authentication)
    tls: ServerTls | None = None  # None = plaintext
    # Certificate names allowed to dispatch, checked when callers must present one (mTLS).
    coordinator_identities: tuple[str, ...] = (DEFAULT_COORDINATOR_IDENTITY,)
    etcd_security: EtcdSecurity = field(default_factory=EtcdSecurity)


def _size_arg(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _address_arg(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _prefix_arg(text: str) -> str:
    try:
        Keys(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _lease_ttl_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lease-ttl must be a number of seconds, got {text!r}") from None
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"--lease-ttl must be 1..3600 s (etcd's minimum is 1), got {text}")
    return value


def _device_arg(text: str) -> str:
    if text == "cpu" or text == "cuda" or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="i2v-node",
        description="GPU worker: serves image-to-video generation over gRPC (service i2v.v1.Node).",
    )
    p.add_argument("--model", required=True, help="local pipeline directory, hub id, or 'tiny' (test model)")
    p.add_argument("--listen", type=_address_arg, default="127.0.0.1:50051", help="gRPC address HOST:PORT")
    p.add_argument(
        "--metrics-listen",
        type=_address_arg,
        default=None,
        help="Prometheus /metrics address HOST:PORT (default: no metrics endpoint)",
    )
    p.add_argument("--device", type=_device_arg, default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument(
        "--dtype",
        choices=("float16", "bfloat16", "float32"),
        default=None,
        help="weights dtype (default float16 on cuda, float32 on cpu)",
    )
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="model cache ($I2V_CACHE_DIR or ~/.cache/...)"
    )
    p.add_argument(
        "--max-vram",
        type=_size_arg,
        default=None,
        metavar="SIZE",
        help="cap the accelerator memory this node uses (e.g. 10GiB); on CUDA also sets the per-process "
        "memory fraction",
    )
    p.add_argument(
        "--artifacts",
        default="",
        metavar="DIR_OR_URL",
        help="artifact store for input images and output videos: a directory, file:// or s3:// URL; "
        "in a cluster it must be the coordinator's store (required with --etcd)",
    )
    p.add_argument(
        "--tokens-file",
        default=os.environ.get("I2V_TOKENS_FILE", ""),
        metavar="PATH",
        help="accept only calls with a token from this file (`sha256:<hex> <name> <client|admin>` lines, "
        "reloaded on change; the coordinators present their --dispatch-token-file); default "
        "$I2V_TOKENS_FILE, none = no authentication",
    )
    cluster = p.add_argument_group("cluster (join by giving --etcd; without it the node runs standalone)")
    cluster.add_argument(
        "--etcd",
        default="",
        metavar="ENDPOINTS",
        help="etcd endpoints, comma-separated host:port: register there and take dispatched jobs",
    )
    cluster.add_argument(
        "--advertise",
        type=_address_arg,
        default=None,
        metavar="HOST:PORT",
        help="address coordinators dial (default: the bound --listen address; a wildcard host becomes "
        "the hostname)",
    )
    cluster.add_argument(
        "--prefix", type=_prefix_arg, default=None, help=f"etcd key prefix (default {DEFAULT_PREFIX})"
    )
    cluster.add_argument(
        "--lease-ttl",
        type=_lease_ttl_arg,
        default=None,
        metavar="SECONDS",
        help="registration lease TTL: a crashed node's key and claims vanish this long after (default 10)",
    )
    add_server_flags(p)
    p.add_argument(
        "--coordinator-identity",
        action="append",
        default=None,
        metavar="NAME",
        help="with --tls-client-ca: a certificate name (CN or DNS name) allowed to dispatch jobs; "
        f"repeatable (default {DEFAULT_COORDINATOR_IDENTITY})",
    )
    add_etcd_security_args(cluster)
    testing = p.add_argument_group("testing only (never in production)")
    testing.add_argument(
        "--simulate-free-vram",
        type=_size_arg,
        default=None,
        metavar="SIZE",
        help="TESTING: a CPU node reports this much free accelerator memory (tier and profile choice "
        "follow it; the pipeline still runs on the CPU)",
    )
    testing.add_argument(
        "--simulate-free-vram-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="TESTING: like --simulate-free-vram, re-read from PATH (a size like 6GiB) at every probe, so "
        "tests can change it while the node runs",
    )
    testing.add_argument(
        "--fault-inject-oom",
        default=None,
        metavar="PLAN",
        help="TESTING: raise out-of-memory at chosen stages/profiles, e.g. 'denoise', "
        "'decode:fast,chunked', 'encode_prompt:*'",
    )
    # The same names as i2v-coordinator's (--id, --drain-grace); the older names still work.
    p.add_argument(
        "--drain-grace",
        "--drain-grace-seconds",
        dest="drain_grace_seconds",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds the running job may take before it is cancelled (default 30)",
    )
    p.add_argument(
        "--id",
        "--node-id",
        dest="node_id",
        default=None,
        help="identity in logs, status, metrics and etcd; unique in a cluster (default: hostname)",
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument(
        "--online",
        action="store_true",
        help="allow model downloads from the hub (default: offline, local files only)",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> NodeConfig:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.simulate_free_vram is not None and ns.simulate_free_vram_file is not None:
        parser.error("use one of --simulate-free-vram and --simulate-free-vram-file, not both")
    if (ns.simulate_free_vram is not None or ns.simulate_free_vram_file is not None) and ns.device != "cpu":
        parser.error("--simulate-free-vram* is for CPU nodes only (testing); drop it or use --device cpu")
    if ns.drain_grace_seconds < 0:
        parser.error("--drain-grace-seconds must be >= 0")
    cluster_only = {"--advertise": ns.advertise, "--prefix": ns.prefix, "--lease-ttl": ns.lease_ttl}
    security, endpoints = EtcdSecurity(), tuple[str, ...]()
    if not ns.etcd:
        given = [flag for flag, value in cluster_only.items() if value is not None]
        given += given_on_command_line(ns)
        if given:
            parser.error(f"{', '.join(given)} only apply in a cluster; add --etcd ENDPOINTS or drop them")
    elif not ns.artifacts:
        parser.error("--etcd needs --artifacts DIR_OR_URL: the artifact store the coordinator uses")
    else:
        try:
            security = etcd_security_from_args(ns)
            endpoints = tuple(parse_endpoints(ns.etcd, tls=security.tls))
        except ValueError as err:  # EtcdSecurityError included
            parser.error(str(err))
    try:
        tls = server_tls_from(ns.tls_cert, ns.tls_key, ns.tls_client_ca)
    except TlsConfigError as err:
        parser.error(str(err))
    if ns.coordinator_identity and (tls is None or tls.client_ca is None):
        parser.error("--coordinator-identity is checked against client certificates: add --tls-client-ca")
    node_id = ns.node_id or socket.gethostname()
    if "/" in node_id or not node_id:
        parser.error(f"--id {node_id!r} must be non-empty and contain no '/'")
    return NodeConfig(
        model=ns.model,
        listen=ns.listen,
        metrics_listen=ns.metrics_listen,
        device=ns.device,
        dtype=ns.dtype,
        cache_dir=ns.cache_dir or default_cache_dir(),
        max_vram_bytes=ns.max_vram,
        simulate_free_vram_bytes=ns.simulate_free_vram,
        simulate_free_vram_file=ns.simulate_free_vram_file,
        drain_grace_seconds=ns.drain_grace_seconds,
        node_id=node_id,
        fault_inject_oom=ns.fault_inject_oom,
        log_level=ns.log_level,
        offline=not ns.online,
        etcd=endpoints,
        advertise=ns.advertise or "",
        artifacts=ns.artifacts,
        prefix=ns.prefix or DEFAULT_PREFIX,
        lease_ttl=ns.lease_ttl or 10.0,
        tokens_file=ns.tokens_file,
        tls=tls,
        coordinator_identities=tuple(ns.coordinator_identity or (DEFAULT_COORDINATOR_IDENTITY,)),
        etcd_security=security,
    )
