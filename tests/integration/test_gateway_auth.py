"""The gateway in front of a secured cluster: etcd, two `i2v-coordinator` processes with a tokens
file, a per-client submit rate and mTLS on every gRPC port, one tiny `i2v-node`, and `i2v-gateway`
reaching them over mTLS (its CA from $I2V_TLS_CA, its client certificate from flags) while serving
HTTPS itself. Spoken to by OpenAI's Python SDK with the callers' tokens as api keys: the gateway
has no token of its own, so each request is decided on its caller's token by the coordinators.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from i2v_client import ClientTls
from i2v_contract import auth
from tests.etcd_cluster import EtcdCluster
from tests.integration.gateway_process import GatewayCluster, Security, gateway_cluster
from tests.media import decode, png
from tests.pki import Issued, TestCA

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]

ALICE, BOB, CAROL, ROOT = (f"{name}-{uuid.uuid4().hex}" for name in ("alice", "bob", "carol", "root"))
BURST = 2  # submits each client may make at once; refilled at one per 100 s
TINY = {"frames": 2, "steps": 2, "fps": 4, "seed": 3}


@dataclass
class Secured:
    cluster: GatewayCluster
    ca: TestCA

    @property
    def url(self) -> str:
        return self.cluster.url

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca.cert)

    def openai(self, api_key: str) -> openai.OpenAI:
        http = httpx.Client(verify=self.ssl(), timeout=60)
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, http_client=http)

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, verify=self.ssl(), headers=headers, timeout=60)


def _server_flags(issued: Issued, ca: TestCA) -> tuple[str, ...]:
    return ("--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-client-ca", str(ca.cert))


@pytest.fixture(scope="module")
def secured(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    workdir = tmp_path_factory.mktemp("gateway-auth")
    ca = TestCA(workdir / "pki")
    coordinator, node = ca.issue("i2v-coordinator"), ca.issue("gw-auth-node")
    gateway_client = ca.issue("i2v-gateway", client=True, server=False)
    https = ca.issue("gateway-https", client=False, file_stem="https")
    tokens = workdir / "tokens"
    lines = [auth.token_line(t, n) for t, n in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol"))]
    tokens.write_text("\n".join([*lines, auth.token_line(ROOT, "root", auth.ADMIN)]) + "\n")
    security = Security(
        coordinator_flags=(
            *_server_flags(coordinator, ca), "--tls-ca", str(ca.cert), "--tokens-file", str(tokens),
            "--submit-burst", str(BURST), "--submit-rate", "0.01",
        ),
        node_flags=_server_flags(node, ca),
        node_tls=ClientTls(ca.cert, coordinator.cert, coordinator.key),
        tls=ClientTls(ca.cert, gateway_client.cert, gateway_client.key),
        admin_token=ROOT,
        gateway_env=(("I2V_TLS_CA", str(ca.cert)),),
        https_ca=ca.cert,
    )  # fmt: skip
    flags = ("--tls-cert", str(gateway_client.cert), "--tls-key", str(gateway_client.key))
    flags += ("--https-cert", str(https.cert), "--https-key", str(https.key))
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    with gateway_cluster(etcd.endpoints, workdir, cache, *flags, security=security) as cluster:
        yield Secured(cluster, ca)


def create(client: openai.OpenAI) -> Any:
    return client.videos.create(
        prompt="a rusty robot", input_reference=("in.png", png(), "image/png"), size="64x64",  # type: ignore[arg-type]
        extra_body=TINY,  # type: ignore[arg-type]
    )  # fmt: skip


def wait_done(client: openai.OpenAI, video_id: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = client.videos.retrieve(video_id)
        if video.status in ("completed", "failed"):
            return video
        time.sleep(0.1)
    raise AssertionError(f"video {video_id} not done within {timeout}s")


def error_of(err: openai.APIStatusError) -> dict[str, Any]:
    body: dict[str, Any] = err.response.json()["error"]
    return body


def test_the_gateway_serves_https_and_says_it_reaches_the_coordinators_over_tls(secured: Secured) -> None:
    assert secured.url.startswith("https://")
    with secured.http() as http:
        assert http.get("/readyz").status_code == 200
    log = secured.cluster.gateway.log()
    assert f"serving {secured.url} " in log and "over TLS" in log
    for token in (ALICE, BOB, CAROL, ROOT):
        assert token not in log


def test_ready_while_a_coordinator_leads_though_the_fleet_view_is_an_admins(secured: Secured) -> None:
    leader, _, _ = secured.cluster.group.wait_leader(30)
    with secured.http() as http:
        ready = http.get("/readyz")
        fleet = http.get("/v1/cluster")  # what readiness used to ask: refused without an admin token
    # asked over mTLS with the gateway's client certificate, through the health service (no token)
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "leader": leader.address}
    assert fleet.status_code == 401


def test_no_key_a_malformed_header_or_an_unknown_key_is_401(secured: Secured) -> None:
    with secured.http() as http:
        bare = http.get("/v1/videos")
        basic = http.get("/v1/videos", headers={"authorization": "Basic abc"})
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "authentication_error"
    assert basic.status_code == 401 and basic.json()["error"]["code"] == "invalid_authorization"
    stranger = secured.openai(f"nobody-{uuid.uuid4().hex}")
    with pytest.raises(openai.AuthenticationError) as listed:
        stranger.videos.list()
    with pytest.raises(openai.AuthenticationError):
        create(stranger)
    assert error_of(listed.value)["type"] == "authentication_error"


def test_a_client_makes_and_downloads_its_own_video_and_another_client_learns_nothing_of_it(
    secured: Secured,
) -> None:
    alice, bob, root = secured.openai(ALICE), secured.openai(BOB), secured.openai(ROOT)
    made = wait_done(alice, create(alice).id)
    assert made.status == "completed", made
    assert decode(alice.videos.download_content(made.id).content) == (2, 4.0, 64, 64)
    assert made.id in [v.id for v in alice.videos.list().data]

    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    foreign, absent = [], []
    for video_id, into in ((made.id, foreign), (missing, absent)):
        for call in (bob.videos.retrieve, bob.videos.download_content, bob.videos.delete):
            with pytest.raises(openai.PermissionDeniedError) as err:
                call(video_id)
            into.append(error_of(err.value))
    # One answer for another client's video and for none at all: a refusal says nothing of either.
    assert [{**e, "message": e["message"].replace(made.id, "ID")} for e in foreign] == [
        {**e, "message": e["message"].replace(missing, "ID")} for e in absent
    ]
    assert all(e["type"] == "permission_error" for e in foreign) and "alice" not in str(foreign)
    assert made.id not in [v.id for v in bob.videos.list().data]
    assert root.videos.retrieve(made.id).status == "completed"  # an admin sees every client's
    assert alice.videos.retrieve(made.id).status == "completed"  # bob's delete changed nothing


def test_a_client_over_its_submit_rate_gets_429_with_retry_after(secured: Secured) -> None:
    carol = secured.openai(CAROL)
    for _ in range(BURST):
        create(carol)
    with pytest.raises(openai.RateLimitError) as refused:
        create(carol)
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert error_of(refused.value)["type"] == "rate_limit_error"
    assert secured.openai(BOB).videos.list() is not None  # another client's bucket is its own


def test_the_cluster_view_is_an_admins(secured: Secured) -> None:
    with secured.http(ROOT) as root, secured.http(ALICE) as alice:
        seen = root.get("/v1/cluster")
        refused = alice.get("/v1/cluster")
    assert seen.status_code == 200, seen.text
    assert [n["id"] for n in seen.json()["nodes"]] == [secured.cluster.node_id]
    assert seen.json()["leader"]["id"]
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    assert "admin" in refused.json()["error"]["message"]
