#!/opt/i2v/venv/bin/python
"""An exec probe for the servers' TLS gRPC ports: asks grpc.health.v1 on ADDRESS about SERVICE over
TLS, presenting a client certificate where one is given (mTLS ports require it); exit 0 when the
answer is SERVING, 1 otherwise, with one line saying what it got.

The kubelet's own gRPC probe speaks plaintext (or, where newer clusters offer it, TLS without a
client certificate), so it cannot probe a TLS or mTLS port; this one runs inside the container with
the pod's own files. The image installs it as /opt/i2v/venv/bin/i2v-grpc-probe (docs/deploy.md).
"""

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="i2v-grpc-probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", required=True, help="host:port of the gRPC port (in a pod: 127.0.0.1:PORT)")
    p.add_argument("--service", default="", help="health service name ('' = the server as a whole)")
    p.add_argument("--ca", type=Path, help="CA that signed the server's certificate (none: plaintext)")
    p.add_argument("--cert", type=Path, help="client certificate, for a port that requires one")
    p.add_argument("--key", type=Path, help="its key")
    p.add_argument("--server-name", help="a name the server's certificate carries (default: the host)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds for the whole call")
    return p.parse_args(argv)


def channel(a: argparse.Namespace) -> grpc.Channel:
    if a.ca is None:
        return grpc.insecure_channel(a.addr)
    creds = grpc.ssl_channel_credentials(
        root_certificates=a.ca.read_bytes(),
        private_key=a.key.read_bytes() if a.key else None,
        certificate_chain=a.cert.read_bytes() if a.cert else None,
    )
    options = [("grpc.ssl_target_name_override", a.server_name)] if a.server_name else []
    return grpc.secure_channel(a.addr, creds, options)


def main(argv: list[str]) -> int:
    a = parse(argv)
    try:
        with channel(a) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=a.service), timeout=a.timeout
            )
    except OSError as err:
        print(f"cannot read {err.filename}: {err.strerror}")
        return 1
    except grpc.RpcError as err:
        print(f"{a.addr} {a.service!r}: {err.code().name}: {err.details()}")
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{a.addr} {a.service!r}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
