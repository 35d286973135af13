"""The local cluster's plan (pure): which processes `i2v up` starts, in which order, on which ports,
with which flags, and why that layout. The shell (`launch.py`) finds the host's facts and free ports
and carries the plan out; nothing here touches a process, a socket or a file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from i2v_contract.tiers import tier_for_free_bytes, tier_name

GIB = 1024**3
ETCD, COORDINATOR, NODE, PROMETHEUS = "etcd", "coordinator", "node", "prometheus"
GATEWAY = "gateway"
# Stop order: nodes drain first (they finish a running job), then the HTTP gateway and the control
# plane, then the scraper, etcd last (everything above it writes there until it exits).
STOP_ORDER = (NODE, GATEWAY, COORDINATOR, PROMETHEUS, ETCD)
# How long each kind gets after SIGTERM before SIGKILL: a node finishes its job (drain grace 30 s).
STOP_GRACE_S = {NODE: 45.0, GATEWAY: 15.0, COORDINATOR: 15.0, PROMETHEUS: 15.0, ETCD: 15.0}
DEFAULT_CPU_NODES = (10 * GIB, 14 * GIB, 20 * GIB)  # three tiers, so routing shows
COORDINATOR_IDS = ("c1", "c2")
TINY = "tiny"
SCRAPE_S = 10


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int


@dataclass(frozen=True)
class Host:
    """What `i2v up` found on this machine."""

    etcd: str  # the etcd binary
    bin_dir: Path  # where i2v-node, i2v-coordinator and i2v-gateway are
    cpus: int
    gpus: tuple[Gpu, ...] = ()
    gpu_note: str = ""  # why no GPU is used, when none is ("torch sees no CUDA device")
    prometheus: str | None = None  # the prometheus binary, None when absent
    cached_model: str | None = None  # full-size weights found in the hub cache
    gateway: str = ""  # the i2v-gateway binary; "" = beside i2v-node


@dataclass(frozen=True)
class Options:
    state_dir: Path  # absolute
    cpu_nodes: tuple[int, ...] = DEFAULT_CPU_NODES  # simulated free VRAM of each CPU node; 0 = plain CPU
    device: str = "auto"  # auto, cpu or cuda
    model: str = ""  # "" = the cached full-size model on a GPU, else tiny
    prometheus: bool = True
    online: bool = False


@dataclass(frozen=True)
class Proc:
    name: str
    kind: str
    argv: tuple[str, ...]
    addr: str = ""  # gRPC (or etcd client) address
    metrics: str = ""  # metrics URL
    detail: str = ""  # what it is, for the summary
    env: tuple[tuple[str, str], ...] = ()  # set on top of the caller's environment

    @property
    def log(self) -> str:
        return f"logs/{self.name}.log"


@dataclass(frozen=True)
class FirstVideo:
    """The request `i2v up` makes its first video with: small enough for the model it runs."""

    width: int
    height: int
    frames: int
    steps: int
    fps: int = 8
    seed: int = 7
    prompt: str = "the sun rising over green hills, clouds drifting"

    @property
    def size_flags(self) -> tuple[str, ...]:
        """`i2v generate` flags for this size (the frame rate included)."""
        return (
            *("--width", str(self.width), "--height", str(self.height)),
            *("--frames", str(self.frames), "--steps", str(self.steps), "--fps", str(self.fps)),
        )


@dataclass(frozen=True)
class Plan:
    procs: tuple[Proc, ...]  # start order
    model: str
    why: str  # why these nodes, one sentence
    first: FirstVideo
    files: Mapping[str, str] = field(default_factory=dict)  # state-dir-relative path -> text

    def of(self, kind: str) -> tuple[Proc, ...]:
        return tuple(p for p in self.procs if p.kind == kind)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(p.addr for p in self.of(COORDINATOR))

    @property
    def prometheus_url(self) -> str:
        return next((p.addr for p in self.of(PROMETHEUS)), "")

    @property
    def gateway_url(self) -> str:
        return next((p.addr for p in self.of(GATEWAY)), "")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    device: str
    detail: str
    flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def gib(n: int) -> str:
    return f"{n / GIB:g} GiB"


def choose_nodes(options: Options, host: Host) -> tuple[tuple[NodeSpec, ...], str, str]:
    """(the nodes, their model, why): one node per CUDA device when there is one, else CPU nodes on
    the tiny model reporting simulated free VRAM. ValueError when --device cuda finds none."""
    use_gpu = options.device != "cpu" and bool(host.gpus)
    if options.device == "cuda" and not host.gpus:
        raise ValueError(f"--device cuda, but {host.gpu_note or 'torch sees no CUDA device'}")
    if use_gpu:
        model = options.model or host.cached_model or TINY
        nodes = tuple(
            NodeSpec(
                f"gpu{g.index}",
                "cuda",
                f"cuda:{g.index} {g.name}, {gib(g.total_bytes)}",
                ("--device", "cuda"),
                (("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", str(g.index))),
            )
            for g in host.gpus
        )
        source = "given" if options.model else ("found in the hub cache" if host.cached_model else "")
        why = f"{len(nodes)} CUDA device(s): one node each on model {model}" + (
            f" ({source})" if source else " (no full-size weights cached; --model PATH_OR_HUB_ID)"
        )
        return nodes, model, why
    model = options.model or TINY
    threads = str(max(1, host.cpus // max(1, len(options.cpu_nodes))))
    cpu_env = (("OMP_NUM_THREADS", threads),)
    nodes = tuple(
        NodeSpec(
            f"n{i}-{size // GIB}g" if size else f"n{i}-cpu",
            "cpu",
            f"cpu, reports {gib(size)} free (simulated), tier {tier_name(tier_for_free_bytes(size))}"
            if size
            else "cpu, tier cpu",
            ("--simulate-free-vram", str(size)) if size else (),
            cpu_env,
        )
        for i, size in enumerate(options.cpu_nodes, start=1)
    )
    note = host.gpu_note or "torch sees no CUDA device"
    if options.device == "cpu":
        note = "--device cpu"
    why = f"{note}: {len(nodes)} CPU node(s) on model {model}, {threads} torch thread(s) each"
    return nodes, model, why


def first_video(model: str) -> FirstVideo:
    if model == TINY:
        return FirstVideo(width=64, height=64, frames=8, steps=10)
    return FirstVideo(width=512, height=512, frames=16, steps=25)


def _etcd(host: Host, state_dir: Path, client: int, peer: int) -> Proc:
    addr, peer_url = f"127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    argv = (
        host.etcd,
        "--name", "local",
        "--data-dir", str(state_dir / "etcd"),
        "--listen-client-urls", f"http://{addr}",
        "--advertise-client-urls", f"http://{addr}",
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"local={peer_url}",
        "--initial-cluster-token", f"i2v-local-{client}",
        "--log-level", "warn",
        "--auto-compaction-mode", "periodic",
        "--auto-compaction-retention", "5m",
    )  # fmt: skip
    return Proc("etcd", ETCD, argv, addr, f"http://{addr}/metrics", "etcd, data in etcd/")


def _server(kind: str, name: str, argv: tuple[str, ...], port: int, mport: int, detail: str) -> Proc:
    addr, metrics = f"127.0.0.1:{port}", f"127.0.0.1:{mport}"
    flags = ("--listen", addr, "--metrics-listen", metrics)
    return Proc(name, kind, (*argv, *flags), addr, f"http://{metrics}/metrics", detail)


def prometheus_config(procs: tuple[Proc, ...]) -> str:
    """prometheus.yml scraping every process (JSON is YAML); jobs named as in deploy/k8s."""
    jobs = []
    for kind in (COORDINATOR, NODE, GATEWAY, ETCD):
        targets = [
            {"targets": [p.metrics.split("/")[2]], "labels": {"name": p.name}}
            for p in procs
            if p.kind == kind
        ]
        if targets:
            jobs.append({"job_name": f"i2v-{kind}", "static_configs": targets})
    every = f"{SCRAPE_S}s"
    config = {"global": {"scrape_interval": every, "evaluation_interval": every}, "scrape_configs": jobs}
    return json.dumps(config, indent=2) + "\n"


def plan(options: Options, host: Host, port: Callable[[], int]) -> Plan:
    """The processes in start order (etcd, coordinators, nodes, Prometheus), each port from `port()`."""
    nodes, model, why = choose_nodes(options, host)
    state = options.state_dir
    etcd = _etcd(host, state, port(), port())
    store = str(state / "artifacts")
    procs = [etcd]
    for cid in COORDINATOR_IDS:
        argv = (str(host.bin_dir / "i2v-coordinator"), "--etcd", etcd.addr, "--artifacts", store, "--id", cid)
        procs.append(_server(COORDINATOR, cid, argv, port(), port(), "coordinator"))
    gateway = host.gateway or str(host.bin_dir / "i2v-gateway")
    procs.append(_gateway(gateway, [p.addr for p in procs[1:]], port()))
    online = ("--online",) if options.online else ()
    for node in nodes:
        argv = (str(host.bin_dir / "i2v-node"), "--model", model, "--etcd", etcd.addr, "--artifacts", store)
        argv += ("--node-id", node.name, *node.flags, *online)
        proc = _server(NODE, node.name, argv, port(), port(), node.detail)
        procs.append(dataclasses.replace(proc, env=node.env))
    if not (options.prometheus and host.prometheus):
        return Plan(tuple(procs), model, why, first_video(model))
    files = {"prometheus.yml": prometheus_config(tuple(procs))}
    procs.append(_prometheus(host.prometheus, state, port()))
    return Plan(tuple(procs), model, why, first_video(model), files)


def _gateway(binary: str, targets: list[str], port: int) -> Proc:
    url = f"http://127.0.0.1:{port}"
    argv = (binary, "--coordinators", ",".join(targets), "--listen", f"127.0.0.1:{port}")
    return Proc(
        GATEWAY, GATEWAY, argv, url, f"{url}/metrics", "HTTP gateway: the web page and the videos API"
    )


def _prometheus(binary: str, state_dir: Path, port: int) -> Proc:
    url = f"http://127.0.0.1:{port}"
    argv = (
        binary,
        f"--config.file={state_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={state_dir / 'prometheus'}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address=127.0.0.1:{port}",
    )
    return Proc(PROMETHEUS, PROMETHEUS, argv, url, f"{url}/metrics", "Prometheus")


def stop_groups(kinds: list[str]) -> list[list[int]]:
    """Indexes of `kinds` grouped in STOP_ORDER (unknown kinds last), each group stopped together."""
    order = {kind: i for i, kind in enumerate(STOP_ORDER)}
    groups: dict[int, list[int]] = {}
    for i, kind in enumerate(kinds):
        groups.setdefault(order.get(kind, len(order)), []).append(i)
    return [groups[k] for k in sorted(groups)]
