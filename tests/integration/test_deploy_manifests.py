"""deploy/: the offline checks of scripts/check_deploy.sh (each skipped, with the reason, when its
tool is missing), then assertions on the rendered Kubernetes objects and the systemd units that
would otherwise drift silently: stop timeouts above the drain grace, probes on the real gRPC
health service names, the GPU request, non-root containers everywhere, the flags (and their
values) that the real `i2v-node` / `i2v-coordinator` accept, etcd membership, alert rules on
metrics the servers export. docs/deploy.md explains the choices."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHECK = ROOT / "scripts" / "check_deploy.sh"
SYSTEMD = DEPLOY / "systemd"
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())
GPU_OVERLAYS = ("production", "external-etcd")  # dev runs a CPU node on the tiny pipeline

# After the drain grace a node still writes its result (budget up to 60 s), leaves etcd and stops
# gRPC (2 s); a coordinator resigns (one etcd call) and closes.
NODE_STOP_MARGIN_S = 70
COORDINATOR_STOP_MARGIN_S = 5
# The slowest model load a node's startup probe must tolerate before liveness applies.
NODE_LOAD_BUDGET_S = 600

SCRIPTS = {"node": "i2v-node", "coordinator": "i2v-coordinator"}
# The tools pip installed beside this interpreter come first, as in scripts/test.sh.
TOOL_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
# Stand-ins for what the kubelet fills in (downward API) and systemd specifiers.
FIELD_SAMPLES = {"metadata.name": "i2v-sample-0", "status.podIP": "10.0.0.7", "metadata.namespace": "i2v"}
SPECIFIERS = {"%H": "gpuhost", "%i": "0", "%C": "/var/cache", "%%": "%"}


def tool_missing(*tools: str) -> str | None:
    for tool in tools:
        if tool == "cloudcoil":
            if importlib.util.find_spec("cloudcoil") is None:
                return "cloudcoil-models-prometheus-operator is not installed (pip)"
        elif shutil.which(tool, path=TOOL_PATH) is None:
            return f"{tool} is not on PATH"
    return None


def run_check(name: str, out: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable, PATH=TOOL_PATH)
    if out is not None:
        env["I2V_DEPLOY_OUT"] = str(out)
    return subprocess.run(
        ["bash", str(CHECK), name], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


# ---- the checks of scripts/check_deploy.sh ----

CHECK_TOOLS = {
    "render": ("kubectl",),
    "k8s-schema": ("kubectl", "kubernetes-validate"),
    "crd-schema": ("kubectl", "cloudcoil"),
    "alerts": ("kubectl", "promtool"),
    "dockerfile": ("hadolint",),
    "systemd": ("systemd-analyze",),
}


@pytest.mark.parametrize("check", list(CHECK_TOOLS))
def test_check_deploy(check: str) -> None:
    missing = tool_missing(*CHECK_TOOLS[check])
    if missing:
        pytest.skip(f"{check}: {missing}")
    result = run_check(check)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check_deploy: ok" in result.stdout


# ---- the rendered objects ----


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    missing = tool_missing("kubectl")
    if missing:
        pytest.skip(f"rendering the overlays: {missing}")
    out = tmp_path_factory.mktemp("rendered")
    result = run_check("render", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return {p.stem: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(out.glob("*.yaml"))}


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def configmaps(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {name: d.get("data", {}) for name, d in by_kind(docs, "ConfigMap").items()}


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d, d["spec"]["template"]["spec"]


def server_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(role, pod spec, container) for every container that runs i2v-node or i2v-coordinator."""
    for _, spec in pod_templates(docs):
        for c in spec["containers"]:
            for role, script in SCRIPTS.items():
                if c.get("command", [None])[0] == script:
                    yield role, spec, c


def container_env(c: dict[str, Any], maps: dict[str, dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            env.update(maps[src["configMapRef"]["name"]])
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = FIELD_SAMPLES[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            env[e["name"]] = maps[ref["name"]][ref["key"]]
    return env


def expand_k8s(args: list[str], env: dict[str, str]) -> list[str]:
    """$(VAR) as the kubelet expands it; a reference to an undefined variable fails the test (the
    kubelet would pass it on literally)."""

    def one(m: re.Match[str]) -> str:
        assert m.group(1) in env, f"$({m.group(1)}) is not defined for the container"
        return env[m.group(1)]

    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, a) for a in args]


def flag_value(args: list[str], flag: str) -> str:
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag:
            return args[i + 1]
    raise AssertionError(f"{flag} not in {args}")


def resolved_servers(
    rendered: dict[str, list[dict[str, Any]]],
) -> Iterator[tuple[str, str, dict, dict, list]]:
    """(overlay, role, pod spec, container, args with $(VAR) expanded)."""
    for overlay in OVERLAYS:
        docs = rendered[overlay]
        maps = configmaps(docs)
        for role, spec, c in server_containers(docs):
            yield overlay, role, spec, c, expand_k8s(c.get("args", []), container_env(c, maps))


def test_every_overlay_runs_both_servers(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in OVERLAYS:
        roles = sorted(role for role, _, _ in server_containers(rendered[overlay]))
        assert roles == ["coordinator", "node"], overlay


def test_termination_grace_covers_the_drain(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, role, spec, _, args in resolved_servers(rendered):
        grace = spec["terminationGracePeriodSeconds"]
        drain = float(flag_value(args, "--drain-grace"))  # the same name on both servers
        margin = NODE_STOP_MARGIN_S if role == "node" else COORDINATOR_STOP_MARGIN_S
        assert grace >= drain + margin, (overlay, grace, drain)


def proto_services() -> set[str]:
    names = set()
    for proto in (ROOT / "proto").rglob("*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M)
        for service in re.findall(r"^service\s+(\w+)", text, re.M):
            names.add(f"{package.group(1)}.{service}" if package else service)
    return names


PROBE = "i2v-grpc-probe"  # deploy/docker/grpc_probe.py in the image


def probe_target(probe: dict[str, Any], tls: bool) -> dict[str, Any]:
    """The port and health service a probe asks. The kubelet's gRPC probe speaks plaintext only, so
    a TLS port is probed by i2v-grpc-probe in the container, over TLS with the pod's files."""
    if not tls:
        return dict(probe["grpc"])
    assert "grpc" not in probe, "the kubelet's gRPC probe cannot speak TLS"
    argv = probe["exec"]["command"]
    assert argv[0] == PROBE, argv
    assert flag_value(argv, "--ca"), argv
    return {
        "port": int(flag_value(argv, "--addr").rsplit(":", 1)[1]),
        "service": flag_value(argv, "--service"),
    }


def test_probes_use_the_grpc_health_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    expected = {"node": "i2v.v1.Node", "coordinator": "i2v.v1.Coordinator"}
    assert set(expected.values()) <= proto_services(), "the health service names follow the .proto services"
    for overlay, role, _, c, args in resolved_servers(rendered):
        port = int(flag_value(args, "--listen").rsplit(":", 1)[1])
        assert port in [p["containerPort"] for p in c["ports"]]
        where = (overlay, role)
        tls = "--tls-cert" in used_flags(args)
        # readiness on the per-service status, liveness on the overall one, all on the gRPC port
        assert probe_target(c["readinessProbe"], tls) == {"port": port, "service": expected[role]}, where
        assert probe_target(c["livenessProbe"], tls) == {"port": port, "service": ""}, where
        startup = c["startupProbe"]
        assert probe_target(startup, tls)["port"] == port, where
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        if role == "node":
            assert budget >= NODE_LOAD_BUDGET_S, (where, "a model load must not be killed as dead")
        live = c["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 30, where


def test_gpu_nodes_request_a_gpu(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, role, spec, c, args in resolved_servers(rendered):
        if role != "node":
            continue
        device = flag_value(args, "--device")
        limits = c["resources"].get("limits", {})
        requests = c["resources"].get("requests", {})
        if overlay in GPU_OVERLAYS:
            assert device.startswith("cuda"), overlay
        if device.startswith("cuda"):
            assert str(limits.get("nvidia.com/gpu")) == "1", overlay
            assert str(requests.get("nvidia.com/gpu", "1")) == "1", overlay
            assert spec["nodeSelector"].get("nvidia.com/gpu.present") == "true", overlay
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"]), overlay
        else:
            assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in requests, overlay


def dockerfile_uid() -> int:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    return int(re.search(r"^ARG UID=(\d+)", text, re.M).group(1))


def test_every_container_runs_as_non_root(rendered: dict[str, list[dict[str, Any]]]) -> None:
    uid = dockerfile_uid()
    assert uid != 0
    for name, docs in rendered.items():
        for workload, spec in pod_templates(docs):
            pod = spec.get("securityContext", {})
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = {**pod, **c.get("securityContext", {})}
                where = (name, workload["metadata"]["name"], c["name"])
                assert sc.get("runAsNonRoot") is True, where
                assert sc.get("runAsUser", 0) != 0, where
                assert sc.get("allowPrivilegeEscalation") is False, where
                assert sc.get("readOnlyRootFilesystem") is True, where
                assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
                assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
                if c.get("image", "").startswith(("i2v-cluster", "registry.example.com/i2v/")):
                    assert sc["runAsUser"] == uid, (where, "the image's i2v user")


def test_in_cluster_etcd_membership_matches_its_replicas(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in OVERLAYS:
        docs = rendered[overlay]
        etcd = by_kind(docs, "StatefulSet").get("i2v-etcd")
        if etcd is None:  # an existing etcd (overlays/external-etcd)
            continue
        c = etcd["spec"]["template"]["spec"]["containers"][0]
        maps = configmaps(docs)
        args = expand_k8s(c["args"], container_env(c, maps))
        assert flag_value(args, "--auto-compaction-mode") == "periodic", overlay
        assert flag_value(args, "--auto-compaction-retention"), overlay
        replicas = etcd["spec"]["replicas"]
        members = [m.split("=", 1)[0] for m in flag_value(args, "--initial-cluster").split(",")]
        assert members == [f"i2v-etcd-{i}" for i in range(replicas)], overlay
        service = etcd["spec"]["serviceName"]
        assert by_kind(docs, "Service")[service]["spec"]["clusterIP"] == "None", overlay
        endpoints = sorted(maps[n]["I2V_ETCD"] for n in maps if n.startswith("i2v-config"))[0].split(",")
        assert endpoints == [f"i2v-etcd-{i}.{service}:2379" for i in range(replicas)], overlay


def test_coordinators_are_highly_available(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in OVERLAYS:
        docs = rendered[overlay]
        deployment = by_kind(docs, "Deployment")["i2v-coordinator"]
        assert deployment["spec"]["replicas"] >= 2, overlay
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        pdbs = [
            p
            for p in by_kind(docs, "PodDisruptionBudget").values()
            if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert pdbs, overlay
        anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        if overlay in GPU_OVERLAYS:
            assert anti.get("requiredDuringSchedulingIgnoredDuringExecution"), overlay


def test_alerts_watch_metrics_the_servers_export(rendered: dict[str, list[dict[str, Any]]]) -> None:
    sources = "\n".join(
        p.read_text() for pkg in ("coordinator", "node", "common") for p in (ROOT / pkg).rglob("*.py")
    )
    for overlay in GPU_OVERLAYS:
        docs = rendered[overlay]
        monitor = by_kind(docs, "ServiceMonitor")["i2v-cluster"]
        jobs = set(monitor["spec"]["selector"]["matchExpressions"][0]["values"])
        services = by_kind(docs, "Service").values()
        scraped = [s for s in services if s["metadata"]["labels"].get(monitor["spec"]["jobLabel"]) in jobs]
        assert {"i2v-coordinator", "i2v-node"} <= {
            s["metadata"]["labels"]["app.kubernetes.io/name"] for s in scraped
        }
        for s in scraped:
            assert "metrics" in [p["name"] for p in s["spec"]["ports"]], s["metadata"]["name"]
        for rule in by_kind(docs, "PrometheusRule")["i2v-cluster"]["spec"]["groups"][0]["rules"]:
            for metric in re.findall(r"\b(i2v_[a-z0-9_]+)", rule["expr"]):
                assert f'"{metric}"' in sources, (rule["alert"], metric, "no server exports it")
            for job in re.findall(r'job="([^"]+)"', rule["expr"]):
                assert job in jobs, (rule["alert"], job)


# ---- systemd units ----


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order, continuation lines joined."""
    entries = []
    section = ""
    lines = iter(path.read_text().splitlines())
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def specifiers(text: str) -> str:
    return re.sub(r"%[%HiC]", lambda m: SPECIFIERS[m.group(0)], text)


def unit_environment(entries: list[tuple[str, str, str]]) -> dict[str, str]:
    """Environment= defaults, then the EnvironmentFile= examples shipped beside the unit."""
    env: dict[str, str] = {}
    for _, key, value in entries:
        if key == "Environment":
            for item in shlex.split(specifiers(value)):
                name, _, val = item.partition("=")
                env[name] = val
    for _, key, value in entries:
        if key == "EnvironmentFile":
            example = SYSTEMD / Path(specifiers(value).lstrip("-")).name
            assert example.exists(), f"no example {example.name} for EnvironmentFile={value}"
            for line in example.read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    name, _, val = line.partition("=")
                    env[name.strip()] = val.strip()
    return env


def exec_start(entries: list[tuple[str, str, str]], env: dict[str, str]) -> list[str]:
    """ExecStart= as systemd expands it: ${VAR} in place (one word), $VAR alone split at spaces."""
    words = shlex.split(specifiers(next(v for _, k, v in entries if k == "ExecStart")))
    argv: list[str] = []
    for word in words:
        alone = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if alone:
            argv += env.get(alone.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(min|s|h|ms)?", text):
        total += float(number) * {"": 1, "s": 1, "min": 60, "h": 3600, "ms": 0.001}[unit]
    return total


UNITS = sorted(p.name for p in SYSTEMD.glob("*.service"))


@pytest.mark.parametrize("unit", UNITS)
def test_unit_stop_timeout_covers_the_drain(unit: str) -> None:
    entries = unit_entries(SYSTEMD / unit)
    env = unit_environment(entries)
    argv = exec_start(entries, env)
    stop = seconds(next(v for _, k, v in entries if k == "TimeoutStopSec"))
    values = dict(
        (k, v) for _, k, v in entries if k in ("Type", "Restart", "KillSignal", "User", "NoNewPrivileges")
    )
    assert values == {
        "Type": "notify",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "User": "i2v",
        "NoNewPrivileges": "yes",
    }
    drain = float(flag_value(argv, "--drain-grace"))  # the same name on both servers
    if Path(argv[0]).name == "i2v-node":
        assert stop >= drain + NODE_STOP_MARGIN_S, (unit, stop, drain)
        keys = {(k, v) for _, k, v in entries}
        assert ("PrivateDevices", "no") in keys and ("DeviceAllow", "char-nvidia-frontend rw") in keys
        assert ("SupplementaryGroups", "video") in keys
    else:
        assert stop >= drain + COORDINATOR_STOP_MARGIN_S, (unit, stop, drain)


# ---- the flags exist, and their values parse ----


@pytest.fixture(scope="module")
def help_flags() -> dict[str, set[str]]:
    flags = {}
    for role, script in SCRIPTS.items():
        found = shutil.which(script, path=TOOL_PATH)
        if found is None:
            pytest.skip(f"{script} is not on PATH (pip install the project)")
        out = subprocess.run(
            [found, "--help"], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        flags[role] = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out))
        assert "--listen" in flags[role], out
    return flags


def used_flags(argv: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in argv if a.startswith("--")}


def parses(script: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """argparse converts and checks each value as it reaches it, and --help, last, exits 0 right
    there: so a wrong type or choice anywhere before it fails, without starting a server."""
    found = shutil.which(script, path=TOOL_PATH) or script
    return subprocess.run([found, *argv, "--help"], capture_output=True, text=True, timeout=120)


def test_manifest_flags_exist_and_parse(
    rendered: dict[str, list[dict[str, Any]]], help_flags: dict[str, set[str]]
) -> None:
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for overlay, role, _, _, args in resolved_servers(rendered):
        unknown = used_flags(args) - help_flags[role]
        assert not unknown, f"{overlay}: {SCRIPTS[role]} has no {sorted(unknown)}"
        if (role, tuple(args)) not in seen:
            seen.add((role, tuple(args)))
            result = parses(SCRIPTS[role], args)
            assert result.returncode == 0, (overlay, args, result.stderr)


def test_unit_flags_exist_and_parse(help_flags: dict[str, set[str]]) -> None:
    for unit in UNITS:
        entries = unit_entries(SYSTEMD / unit)
        argv = exec_start(entries, unit_environment(entries))
        role = next((r for r, s in SCRIPTS.items() if Path(argv[0]).name == s), None)
        if role is None:
            assert Path(argv[0]).name == GATEWAY, unit  # its own test below
            continue
        unknown = used_flags(argv[1:]) - help_flags[role]
        assert not unknown, f"{unit}: {SCRIPTS[role]} has no {sorted(unknown)}"
        result = parses(SCRIPTS[role], argv[1:])
        assert result.returncode == 0, (unit, argv, result.stderr)


# ---- the HTTP gateway (an HTTP server, not a gRPC one: probes on /healthz and /readyz) ----

GATEWAY = "i2v-gateway"


def gateway_parses(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`i2v-gateway ARGS --help` as the module, so the check needs no installed script."""
    from tests.integration.gateway_process import gateway_env

    return subprocess.run(
        [sys.executable, "-m", "i2v_gateway.main", *argv, "--help"],
        capture_output=True, text=True, timeout=120, env=gateway_env(),
    )  # fmt: skip


def gateway_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for _, spec in pod_templates(docs):
        for c in spec["containers"]:
            if c.get("command", [None])[0] == GATEWAY:
                yield spec, c


def test_every_overlay_runs_the_gateway_behind_a_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    known = set(re.findall(r"--[a-z][a-z-]*", gateway_parses([]).stdout))
    for overlay in OVERLAYS:
        docs = rendered[overlay]
        ((spec, c),) = list(gateway_containers(docs))
        args = expand_k8s(c["args"], container_env(c, configmaps(docs)))
        port = int(flag_value(args, "--listen").rsplit(":", 1)[1])
        assert [p["containerPort"] for p in c["ports"]] == [port], overlay
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", overlay
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", overlay
        assert spec["terminationGracePeriodSeconds"] >= float(flag_value(args, "--drain-grace")) + 5, overlay
        services = by_kind(docs, "Service")
        coordinators = flag_value(args, "--coordinators").split(",")
        assert all(t.split(":")[0] in services for t in coordinators), (overlay, coordinators)
        assert "metrics" in [p["name"] for p in services["i2v-gateway"]["spec"]["ports"]], overlay
        assert not used_flags(args) - known, overlay
        result = gateway_parses(args)
        assert result.returncode == 0, (overlay, args, result.stderr)


def test_the_gateway_unit_flags_parse() -> None:
    entries = unit_entries(SYSTEMD / "i2v-gateway.service")
    argv = exec_start(entries, unit_environment(entries))
    assert Path(argv[0]).name == GATEWAY
    result = gateway_parses(argv[1:])
    assert result.returncode == 0, (argv, result.stderr)
