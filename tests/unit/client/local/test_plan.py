"""The local cluster's plan: which processes, in which order, on which ports, with which flags."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from i2v_client.local.plan import (
    COORDINATOR,
    ETCD,
    GATEWAY,
    GIB,
    NODE,
    PROMETHEUS,
    Gpu,
    Host,
    Options,
    choose_nodes,
    first_video,
    plan,
    prometheus_config,
    stop_groups,
)

STATE = Path("/state")
H200 = Gpu(0, "NVIDIA H200", 141 * GIB)
L4 = Gpu(1, "NVIDIA L4", 24 * GIB)


def host(**kw: object) -> Host:
    fields: dict[str, object] = {"etcd": "/usr/bin/etcd", "bin_dir": Path("/venv/bin"), "cpus": 6}
    return Host(**{**fields, **kw})  # type: ignore[arg-type]


def ports() -> itertools.count[int]:
    return itertools.count(40000)


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize(
    ("options", "found", "names", "model", "why"),
    [
        pytest.param(
            Options(STATE),
            host(gpu_note="torch 2.13.0 (a CPU-only build) sees no CUDA device"),
            ["n1-10g", "n2-14g", "n3-20g"],
            "tiny",
            "CPU-only build",
            id="no-gpu-three-simulated-tiers",
        ),
        pytest.param(
            Options(STATE, cpu_nodes=(0, 12 * GIB)),
            host(),
            ["n1-cpu", "n2-12g"],
            "tiny",
            "2 CPU node(s)",
            id="chosen-cpu-nodes-with-a-plain-one",
        ),
        pytest.param(
            Options(STATE),
            host(gpus=(H200, L4), cached_model="ali-vilab/i2vgen-xl"),
            ["gpu0", "gpu1"],
            "ali-vilab/i2vgen-xl",
            "found in the hub cache",
            id="gpus-use-cached-weights",
        ),
        pytest.param(
            Options(STATE),
            host(gpus=(H200,)),
            ["gpu0"],
            "tiny",
            "no full-size weights cached",
            id="gpu-without-weights-runs-tiny",
        ),
        pytest.param(
            Options(STATE, model="/models/i2vgen-xl"),
            host(gpus=(H200,), cached_model="ali-vilab/i2vgen-xl"),
            ["gpu0"],
            "/models/i2vgen-xl",
            "(given)",
            id="given-model-wins",
        ),
        pytest.param(
            Options(STATE, device="cpu"),
            host(gpus=(H200,)),
            ["n1-10g", "n2-14g", "n3-20g"],
            "tiny",
            "--device cpu",
            id="device-cpu-ignores-the-gpu",
        ),
    ],
)
def test_nodes_follow_the_host(options: Options, found: Host, names: list[str], model: str, why: str) -> None:
    nodes, chosen, reason = choose_nodes(options, found)
    assert [n.name for n in nodes] == names
    assert chosen == model and why in reason


def test_device_cuda_without_one_says_why() -> None:
    with pytest.raises(ValueError, match=r"--device cuda, but torch 2\.13\.0 .* sees no CUDA device"):
        choose_nodes(
            Options(STATE, device="cuda"),
            host(gpu_note="torch 2.13.0 (a CPU-only build) sees no CUDA device"),
        )


def test_cpu_nodes_simulate_vram_and_share_the_cpus() -> None:
    nodes, _, _ = choose_nodes(Options(STATE), host(cpus=6))
    assert [n.flags for n in nodes] == [("--simulate-free-vram", str(g * GIB)) for g in (10, 14, 20)]
    assert [n.detail.rsplit("tier ", 1)[1] for n in nodes] == ["lt12", "12-16", "16-24"]
    assert all(dict(n.env) == {"OMP_NUM_THREADS": "2"} for n in nodes)
    one, _, _ = choose_nodes(Options(STATE), host(cpus=2))
    assert dict(one[0].env)["OMP_NUM_THREADS"] == "1"


def test_gpu_nodes_each_see_their_own_device() -> None:
    nodes, _, _ = choose_nodes(Options(STATE), host(gpus=(H200, L4)))
    assert [dict(n.env)["CUDA_VISIBLE_DEVICES"] for n in nodes] == ["0", "1"]
    assert all(n.flags == ("--device", "cuda") and "--simulate-free-vram" not in n.flags for n in nodes)
    assert "NVIDIA L4, 24 GiB" in nodes[1].detail


def test_the_plan_starts_etcd_then_coordinators_then_nodes_then_prometheus() -> None:
    p = plan(Options(STATE), host(prometheus="/usr/bin/prometheus"), ports().__next__)
    assert [x.kind for x in p.procs] == [
        ETCD,
        COORDINATOR,
        COORDINATOR,
        GATEWAY,
        NODE,
        NODE,
        NODE,
        PROMETHEUS,
    ]
    # etcd and Prometheus serve /metrics on their own port; the servers have a second one for it
    used = [
        port for x in p.procs for port in {a.rsplit(":", 1)[1] for a in (x.addr, x.metrics.split("/")[2])}
    ]
    assert len(used) == len(set(used)) == 13  # the gateway serves /metrics on its own port
    etcd = p.procs[0]
    assert flag(etcd.argv, "--data-dir") == "/state/etcd"
    for proc in (*p.of(COORDINATOR), *p.of(NODE)):
        assert flag(proc.argv, "--etcd") == etcd.addr
        assert flag(proc.argv, "--artifacts") == "/state/artifacts"
        assert flag(proc.argv, "--listen") == proc.addr
    assert p.procs[1].argv[0] == "/venv/bin/i2v-coordinator" and p.of(NODE)[0].argv[0] == "/venv/bin/i2v-node"
    assert [flag(x.argv, "--id") for x in p.of(COORDINATOR)] == ["c1", "c2"]
    assert [flag(x.argv, "--node-id") for x in p.of(NODE)] == ["n1-10g", "n2-14g", "n3-20g"]
    assert p.targets == (p.procs[1].addr, p.procs[2].addr)
    assert p.prometheus_url.startswith("http://127.0.0.1:") and "prometheus.yml" in p.files
    assert "--online" not in p.of(NODE)[0].argv
    assert "--online" in plan(Options(STATE, online=True), host(), ports().__next__).of(NODE)[0].argv
    (gateway,) = p.of(GATEWAY)
    assert gateway.argv[0] == "/venv/bin/i2v-gateway" and flag(gateway.argv, "--coordinators") == ",".join(
        p.targets
    )
    assert p.gateway_url == gateway.addr == f"http://{flag(gateway.argv, '--listen')}"


@pytest.mark.parametrize(
    ("options", "found"),
    [
        pytest.param(Options(STATE), host(), id="not-installed"),
        pytest.param(
            Options(STATE, prometheus=False), host(prometheus="/usr/bin/prometheus"), id="turned-off"
        ),
    ],
)
def test_no_prometheus(options: Options, found: Host) -> None:
    p = plan(options, found, ports().__next__)
    assert not p.of(PROMETHEUS) and p.prometheus_url == "" and not p.files


def test_prometheus_scrapes_every_process_under_the_deploy_job_names() -> None:
    p = plan(Options(STATE), host(prometheus="/usr/bin/prometheus"), ports().__next__)
    config = json.loads(p.files["prometheus.yml"])
    scraped = {
        (job["job_name"], sc["labels"]["name"], sc["targets"][0])
        for job in config["scrape_configs"]
        for sc in job["static_configs"]
    }
    want = {(f"i2v-{x.kind}", x.name, x.metrics.split("/")[2]) for x in p.procs if x.kind != PROMETHEUS}
    assert scraped == want and len(want) == 7


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_config(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(prometheus_config(plan(Options(STATE), host(), ports().__next__).procs))
    done = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("model", "size"),
    [
        pytest.param("tiny", (64, 64, 8, 10), id="tiny"),
        pytest.param("ali-vilab/i2vgen-xl", (512, 512, 16, 25), id="full"),
    ],
)
def test_the_first_video_fits_the_model(model: str, size: tuple[int, int, int, int]) -> None:
    f = first_video(model)
    assert (f.width, f.height, f.frames, f.steps) == size


@pytest.mark.parametrize(
    ("kinds", "groups"),
    [
        pytest.param(
            [ETCD, COORDINATOR, COORDINATOR, NODE, NODE, PROMETHEUS],
            [[3, 4], [1, 2], [5], [0]],
            id="nodes-coordinators-prometheus-etcd",
        ),
        pytest.param([ETCD, "supervisor"], [[0], [1]], id="unknown-kinds-last"),
        pytest.param([], [], id="nothing"),
    ],
)
def test_stop_order(kinds: list[str], groups: list[list[int]]) -> None:
    assert stop_groups(kinds) == groups
