"""Secrets hygiene over a full secured run (tests/integration/secured_cluster.py): a job through the
CLI with a token and a client certificate, one through the gateway with OpenAI's SDK, refused calls
(a wrong token, another client's job, a bad field, no client certificate, plaintext), a rotation of
the tokens file; every process at DEBUG. Then no log of any process started (servers, etcd, each CLI
run) and no /metrics page holds a token or its hash, a private key, an etcd password, a prompt or
the input image; no metric names a client or a job.

The run is checked first: a hygiene test that ran nothing, or logged nothing, fails."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import re
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from PIL import Image

from i2v_client import CallError, CoordinatorClient
from i2v_contract import auth
from i2v_contract.wire import common_pb2
from tests.etcd_cluster import etcd_binary
from tests.integration.node_process import BIN, node_env
from tests.integration.secured_cluster import (
    Secrets,
    SecuredCluster,
    secured_cluster,
    write_secret,
    write_tokens,
)
from tests.media import decode

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]


def noise_png(seed: int, size: int = 64) -> bytes:
    """An image no other run sends: random pixels (PNG does not compress them away)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), bytes(rng.getrandbits(8) for _ in range(size * size * 3)))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Run:
    cluster: SecuredCluster
    image: bytes = field(default_factory=lambda: noise_png(uuid.uuid4().int))
    # random text first: a log that cut a prompt short would still show it
    prompts: dict[str, str] = field(
        default_factory=lambda: {
            n: f"{uuid.uuid4().hex} hygiene {n}" for n in ("cli", "cli-negative", "gw", "gw-negative", "bad")
        }
    )
    cli_logs: dict[str, Path] = field(default_factory=dict)
    outcomes: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    job_ids: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> Secrets:
        return self.cluster.secrets

    def cli(self, name: str, *args: str, tls: bool = True) -> subprocess.CompletedProcess[str]:
        """`i2v ARGS` as a user runs it, its output kept as one more log to search."""
        pki, cwd = self.cluster.pki, self.cluster.workdir
        env = {k: v for k, v in node_env(cwd).items() if k == "I2V_CACHE_DIR" or not k.startswith("I2V_")}
        flags = [
            "--tls-ca",
            str(pki.ca.cert),
            "--tls-cert",
            str(pki.client.cert),
            "--tls-key",
            str(pki.client.key),
        ]
        done = subprocess.run(
            [str(BIN / "i2v"), *args, *(flags if tls else [])],
            capture_output=True, text=True, timeout=90, cwd=cwd, env=env,
        )  # fmt: skip
        path = cwd / "cli" / f"{len(self.cli_logs):02d}-{name}.log"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"{done.stdout}\n{done.stderr}")
        self.cli_logs[name] = path
        self.outcomes[name] = done
        return done


def _cli_calls(run: Run) -> None:
    c, t = run.cluster, run.secrets.tokens
    leader, _, _ = c.group.wait_leader(10.0)
    standby = next(p for p in c.group.procs if p is not leader)
    (c.workdir / "in.png").write_bytes(run.image)
    bob_file = write_secret(c.workdir / "bob.token", t["bob"])
    made = run.cli(
        "generate", "generate", "in.png", "--prompt", run.prompts["cli"], "--negative-prompt",
        run.prompts["cli-negative"], "--frames", "2", "--width", "64", "--height", "64", "--steps", "2",
        "--fps", "4", "--seed", "7", "--target", standby.address, "-o", "out/cli.mp4", "--token", t["alice"],
    )  # fmt: skip
    job = re.search(r"^job (\S+)$", made.stdout, re.MULTILINE)
    run.job_ids.append(job.group(1) if job else "")
    run.cli("foreign-job", "get", run.job_ids[0], "--target", c.targets, "--token-file", str(bob_file))
    run.cli("wrong-token", "jobs", "--target", c.targets, "--token", t["wrong"])
    ca_only = ("--tls-ca", str(c.pki.ca.cert))
    run.cli("no-client-cert", "status", "--target", leader.address, *ca_only, "--token", t["root"], tls=False)
    run.cli("plaintext", "status", "--target", leader.address, "--token", t["root"], tls=False)


def _grpc_calls(run: Run) -> None:
    """A bad field the client does not check (the coordinator does), and a TLS handshake to the node
    without a client certificate."""
    c = run.cluster
    bad = common_pb2.GenerationRequest(
        image=run.image, prompt=run.prompts["bad"], frames=999, width=64, height=64, steps=2, fps=4
    )
    with CoordinatorClient(c.targets, tls=c.pki.client_tls, token=run.secrets.tokens["alice"]) as client:
        try:
            client.submit(bad, timeout=20)
            run.outcomes["bad-field"] = None
        except CallError as err:
            run.outcomes["bad-field"] = err
    context = ssl.create_default_context(cafile=str(c.pki.ca.cert))
    try:
        with (
            socket.create_connection(("127.0.0.1", c.node.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
        ):
            wrapped.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            run.outcomes["node-no-cert"] = wrapped.recv(1)  # b"" or an alert: refused either way
    except (ssl.SSLError, OSError) as err:
        run.outcomes["node-no-cert"] = err


def _gateway_calls(run: Run) -> None:
    url, t = f"{run.cluster.gateway.url}/v1", run.secrets.tokens
    bob = openai.OpenAI(base_url=url, api_key=t["bob"], max_retries=0)
    image = ("in.png", run.image, "image/png")
    video = bob.videos.create(
        prompt=run.prompts["gw"], input_reference=image, size="64x64",  # type: ignore[arg-type]
        extra_body={"negative_prompt": run.prompts["gw-negative"], "frames": 2, "steps": 2, "fps": 4},
    )  # fmt: skip
    run.job_ids.append(video.id)
    deadline = time.monotonic() + 60
    while video.status not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        video = bob.videos.retrieve(video.id)
    run.outcomes["gw-video"] = video
    run.outcomes["gw-content"] = (
        bob.videos.download_content(video.id).content if video.status == "completed" else b""
    )
    calls = {
        "gw-wrong-token": lambda: openai.OpenAI(
            base_url=url, api_key=t["wrong"], max_retries=0
        ).videos.list(),
        "gw-foreign": lambda: openai.OpenAI(base_url=url, api_key=t["alice"], max_retries=0).videos.retrieve(
            video.id
        ),
        "gw-bad-field": lambda: bob.videos.create(
            prompt=run.prompts["gw"],
            input_reference=image,
            size="65x64",  # type: ignore[arg-type]
        ),
    }
    for name, call in calls.items():
        try:
            run.outcomes[name] = call()
        except openai.APIStatusError as err:
            run.outcomes[name] = err


def _rotate_tokens(run: Run) -> None:
    """alice's token replaced, carol added: each coordinator takes the new file without a restart."""
    c, t = run.cluster, run.secrets.tokens
    write_tokens(c.tokens_path, run.secrets.token_lines(rotated=True))
    for proc in c.group.procs:
        with CoordinatorClient(proc.address, tls=c.pki.client_tls, token=t["carol"]) as carol:
            deadline = time.monotonic() + 15
            while True:
                try:
                    carol.list_jobs()
                    break
                except CallError:
                    assert time.monotonic() < deadline, f"{proc.member_id} kept the old tokens file"
                    time.sleep(0.1)
    run.cli("rotated-old", "jobs", "--target", c.targets, "--token", t["alice"])
    run.cli("rotated-new", "get", run.job_ids[0], "--target", c.targets, "--token", t["alice2"])


def _scrape(run: Run) -> None:
    ports = run.cluster.metrics_ports()
    pages = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
    pages["gateway"] = f"{run.cluster.gateway.url}/metrics"
    for name, page in pages.items():
        with urllib.request.urlopen(page, timeout=5) as r:
            run.metrics[name] = r.read().decode()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    if etcd_binary() is None:
        pytest.skip("etcd binary not found (install etcd or set ETCD_BIN)")
    workdir = tmp_path_factory.mktemp("hygiene")
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    cache.mkdir(exist_ok=True)
    with secured_cluster(workdir, cache) as cluster:
        made = Run(cluster)
        for step in (_cli_calls, _grpc_calls, _gateway_calls, _rotate_tokens, _scrape):
            step(made)
    yield made  # every process has stopped: its log is complete


def _refused(outcome: Any, words: str) -> bool:
    if isinstance(outcome, subprocess.CompletedProcess):
        return outcome.returncode != 0 and words in outcome.stderr
    return words in str(outcome)


def check_the_run(run: Run) -> None:
    """The run did what the test claims it searched: jobs made, refusals refused, logs written."""
    o = run.outcomes
    assert o["generate"].returncode == 0, o["generate"].stderr
    video = run.cluster.workdir / "out" / "cli.mp4"
    assert run.job_ids[0] and decode(video.read_bytes()) == (2, 4.0, 64, 64)
    assert o["gw-video"].status == "completed", o["gw-video"]
    assert decode(o["gw-content"])[2:] == (64, 64)
    assert _refused(o["foreign-job"], "PERMISSION_DENIED")
    assert _refused(o["wrong-token"], "UNAUTHENTICATED")
    assert _refused(o["no-client-cert"], "pass --tls-cert and --tls-key")
    assert _refused(o["plaintext"], "speaks TLS")
    assert isinstance(o["bad-field"], CallError) and o["bad-field"].code is grpc.StatusCode.INVALID_ARGUMENT
    assert "frames" in o["bad-field"].message
    assert not isinstance(o["node-no-cert"], bytes) or o["node-no-cert"] == b""
    assert isinstance(o["gw-wrong-token"], openai.AuthenticationError)
    assert isinstance(o["gw-foreign"], openai.PermissionDeniedError | openai.NotFoundError)
    assert isinstance(o["gw-bad-field"], openai.BadRequestError) and o["gw-bad-field"].param == "size"
    assert _refused(o["rotated-old"], "UNAUTHENTICATED")
    assert o["rotated-new"].returncode == 0, o["rotated-new"].stderr
    logs = all_logs(run)
    assert all(len(text) > 0 for text in logs.values()), [n for n, t in logs.items() if not t]
    for server in [p.member_id for p in run.cluster.group.procs] + ["hygiene-node"]:
        assert len(logs[server].splitlines()) > 20, f"{server} logged almost nothing at DEBUG"
    for coordinator in run.cluster.group.procs:  # the slip in the rotated file, reported by its number
        assert b"line 6 the first field is not sha256" in logs[coordinator.member_id]
    assert b"i2v-gateway serving" in logs["gateway"] and b" DEBUG " in logs["gateway"]
    assert len(run.metrics) >= 4 and all("# TYPE" in page for page in run.metrics.values())


def all_logs(run: Run) -> dict[str, bytes]:
    paths = run.cluster.log_paths() | {f"cli-{name}": path for name, path in run.cli_logs.items()}
    return {name: path.read_bytes() for name, path in paths.items()}


def _b64_windows(data: bytes) -> list[str]:
    """Pieces of `data`'s base64 whatever the offset it was encoded from."""
    middle = data[len(data) // 2 : len(data) // 2 + 90]
    return [base64.b64encode(middle[shift:]).decode()[4:60] for shift in range(3)]


def needles(run: Run) -> dict[str, str]:
    """What no log may hold, by what it is (the failure says which kind leaked, and where)."""
    s, found = run.secrets, dict[str, str]()
    for name, token in s.tokens.items():
        digest = hashlib.sha256(token.encode()).hexdigest()
        found |= {f"token {name}": token, f"token {name} (its random part)": token.rsplit("-", 1)[1][:12]}
        found |= {f"token {name} sha256": digest[:16]}
    found |= {f"etcd password {name}": pw for name, pw in s.passwords.items()}
    for path in run.cluster.pki.key_files():
        body = [line for line in path.read_text().splitlines() if line and not line.startswith("-----")]
        found |= {f"key {path.name} line {i}": line for i, line in enumerate(body) if len(line) >= 16}
    for name, prompt in run.prompts.items():
        found |= {f"prompt {name}": prompt.split()[0][:16]}
    image = run.image
    found |= {f"image base64 ({i})": w for i, w in enumerate(_b64_windows(image))}
    found |= {"image first 32 bytes hex": image[:32].hex(), "image middle hex": image[200:232].hex()}
    found |= {"image bytes repr": "\\x89PNG", "image bytes in protobuf text": "\\211PNG"}
    return found


def _leaks(texts: dict[str, str], searched: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, needle in searched.items()
        if needle in text
    ]


def test_the_run_did_what_it_claims(run: Run) -> None:
    check_the_run(run)
    assert len(needles(run)) > 40  # tokens, hashes, passwords, key lines, prompts, image pieces


def test_no_log_holds_a_token_key_password_prompt_or_image(run: Run) -> None:
    check_the_run(run)
    logs = all_logs(run)
    leaks = _leaks({n: raw.decode(errors="replace") for n, raw in logs.items()}, needles(run))
    assert not leaks, "\n".join(leaks)
    assert [n for n, raw in logs.items() if b"\x89PNG" in raw] == []
    assert [n for n, raw in logs.items() if re.search(rb"BEGIN [A-Z ]*PRIVATE KEY", raw)] == []


def test_no_metrics_page_holds_a_secret_a_client_name_or_a_job_id(run: Run) -> None:
    check_the_run(run)
    searched = needles(run) | {f"client name {n}": name for n, name in run.secrets.names.items()}
    searched |= {f"job id {i}": job for i, job in enumerate(run.job_ids) if job}
    leaks = _leaks(run.metrics, searched)
    assert not leaks, "\n".join(leaks)
    assert "PRIVATE KEY" not in "".join(run.metrics.values())


def test_the_search_finds_every_secret_where_it_was_planted(run: Run) -> None:
    """The needles can match: each is found in what a careless log line would print."""
    s, image = run.secrets, run.image
    request = common_pb2.GenerationRequest(image=image, prompt=run.prompts["cli"])
    planted = [
        *s.tokens.values(), *(auth.hash_token(t) for t in s.tokens.values()), *s.passwords.values(),
        *(p.read_text() for p in run.cluster.pki.key_files()), *run.prompts.values(),
        *(base64.b64encode(image[k:]).decode() for k in range(3)), image.hex(), repr(image), str(request),
    ]  # fmt: skip
    text = "\n".join(planted)
    assert [what for what, needle in needles(run).items() if needle not in text] == []
    assert _leaks({"planted": str(request)}, needles(run)) != []
