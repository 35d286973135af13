"""`i2v-gateway`: the cluster over HTTP (docs/gateway.md).

Life: bind --listen, print `i2v-gateway serving http://HOST:PORT` (port 0 = any free port), serve;
on SIGTERM/SIGINT: /readyz turns 503, every event stream ends with a `shutdown` event (clients
reconnect, to another replica behind the Service, and resume with Last-Event-ID), new connections
are refused, requests in flight get --drain-grace seconds, then exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import uvicorn

from i2v_client import parse_targets
from i2v_common import tls
from i2v_common.logs import setup_logging
from i2v_common.sdnotify import Notifier
from i2v_contract.addresses import parse_address
from i2v_gateway.app import create_app
from i2v_gateway.gateway import Gateway, Settings

log = logging.getLogger("i2v_gateway")
HTTPS_CERT_ENV, HTTPS_KEY_ENV = "I2V_HTTPS_CERT", "I2V_HTTPS_KEY"


def _add_security(p: argparse.ArgumentParser, env: dict[str, str]) -> None:
    coordinators = p.add_argument_group(
        "reaching the coordinators over TLS (callers' bearer tokens pass through; the gateway has none)"
    )
    tls.add_client_flags(coordinators)
    https = p.add_argument_group("serving HTTPS (without --https-cert: plain HTTP)")
    https.add_argument(
        "--https-cert", type=Path, default=_env_path(env, HTTPS_CERT_ENV), metavar="PATH",
        help=f"serve HTTPS with this certificate (PEM, read at start; ${HTTPS_CERT_ENV})",
    )  # fmt: skip
    https.add_argument(
        "--https-key", type=Path, default=_env_path(env, HTTPS_KEY_ENV), metavar="PATH",
        help=f"its key (${HTTPS_KEY_ENV})",
    )  # fmt: skip


def _env_path(env: dict[str, str], name: str) -> Path | None:
    return Path(env[name]) if env.get(name) else None


def _resolve_security(p: argparse.ArgumentParser, args: argparse.Namespace, env: dict[str, str]) -> None:
    """args.tls (the coordinators' side, resolved as the CLI resolves it) and args.https."""
    if (args.https_cert is None) != (args.https_key is None):
        p.error("HTTPS needs both --https-cert and --https-key")
    try:
        args.tls = tls.client_tls_from_env(
            args.tls_ca, args.tls_cert, args.tls_key, env, args.tls_server_name
        )
        args.https = tls.server_tls_from(args.https_cert, args.https_key, None)
    except tls.TlsConfigError as err:
        p.error(str(err))


def parse_args(argv: Sequence[str] | None, env: dict[str, str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="i2v-gateway", description=__doc__.splitlines()[0])
    p.add_argument(
        "--coordinators", default=env.get("I2V_TARGETS", ""),
        help="coordinator addresses, comma-separated host:port (default: $I2V_TARGETS)",
    )  # fmt: skip
    p.add_argument("--listen", default="127.0.0.1:8080", help="HTTP address, host:port (port 0 = any free)")
    p.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="allow browsers on this origin (repeatable; '*' for any); none by default",
    )  # fmt: skip
    p.add_argument("--max-body-mib", type=float, default=None, help="largest request body (default: 28)")
    p.add_argument("--max-streams", type=int, default=1000, help="event streams open at once (default: 1000)")
    p.add_argument("--drain-grace", type=float, default=10.0, help="seconds requests get on SIGTERM")
    p.add_argument("--log-level", default=env.get("I2V_LOG_LEVEL", "INFO"))
    _add_security(p, env)
    args = p.parse_args(argv)
    if not args.coordinators:
        p.error("--coordinators (or $I2V_TARGETS) is required")
    try:
        parse_targets(args.coordinators, "--coordinators")
        parse_address(args.listen)
    except ValueError as err:
        p.error(str(err))
    if args.max_streams < 1:
        p.error("--max-streams: use 1 or more")
    _resolve_security(p, args, env)
    return args


class _Server(uvicorn.Server):
    """uvicorn's server, draining the gateway (streams end, not ready) the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, gw: Gateway, notifier: Notifier | None) -> None:
        super().__init__(config)
        self._gw = gw
        self._notifier = notifier

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._gw.draining:
            log.info("signal %d: draining (event streams end, requests get the grace period)", sig)
            if self._notifier is not None:
                self._notifier.send("STOPPING=1")
            self._gw.drain()
        super().handle_exit(sig, frame)


def _bind(listen: str) -> socket.socket:
    host, port = parse_address(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings(
        args.coordinators, max_streams=args.max_streams, cors_origins=tuple(args.cors_origin), tls=args.tls
    )
    if args.max_body_mib is not None:
        settings.max_body_bytes = int(args.max_body_mib * 1024 * 1024)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, dict(os.environ))
    setup_logging(args.log_level.upper())
    try:
        sock = _bind(args.listen)
    except OSError as err:
        print(f"i2v-gateway: cannot listen on {args.listen}: {err}", file=sys.stderr)
        return 2
    gw = Gateway.start(settings_from(args))
    config = uvicorn.Config(
        create_app(gw),
        log_level=args.log_level.lower(),
        timeout_graceful_shutdown=max(1, round(args.drain_grace)),
        access_log=False,
        lifespan="on",
        ssl_certfile=args.https.cert if args.https else None,
        ssl_keyfile=args.https.key if args.https else None,
    )
    notifier = Notifier.from_env()
    server = _Server(config, gw, notifier)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if args.https else 'http'}://{shown}:{port}"
    over = " over TLS" if args.tls else ""
    print(f"i2v-gateway serving {url} (coordinators {args.coordinators}{over})", flush=True)
    if notifier is not None:
        notifier.send("READY=1", f"STATUS=serving {url}")
    # uvicorn re-raises the signal that stopped it once its handlers are gone: by then the drain is
    # done, so it lands here and the exit is 0, as the other servers' is.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
