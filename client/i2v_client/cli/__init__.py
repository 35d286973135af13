"""`i2v`: the command line client.

    i2v generate IMAGE --prompt TEXT [--frames N --width W --height H --steps S --seed X --fps F]
                 (--node HOST:PORT | --target ADDR[,ADDR...]) -o OUT.mp4 [--timeout S]
    i2v status  --target ADDR[,ADDR...]          leader, epoch, members, nodes, queue
    i2v jobs    --target ... [--state queued,running] [--limit N | --all] [--page-token T]
    i2v get     JOB --target ... [-o OUT.mp4]    one job; -o writes its video
    i2v cancel  JOB --target ...
    i2v watch   JOB --target ... [--timeout S]   progress until the job ends
    i2v up      [--detach] [--state-dir DIR]     a whole cluster on this machine, and a first video
    i2v down    [--state-dir DIR]                stop it
    i2v token new --name NAME [--role admin]     a bearer token and its line for the tokens file
    i2v --version

`--node` calls one node directly; `--target` goes through the coordinators (any of them: the client
follows the leader and re-attaches across failovers). Without either, `--target` comes from the
I2V_TARGETS environment variable. `status`, `jobs`, `get` and `cancel` take `--json`; `status` and
`jobs` take `--wide`. Servers started with --tokens-file need a token: `--token`, `--token-file`,
or $I2V_TOKEN / $I2V_TOKEN_FILE. Against TLS servers: `--tls-ca` (and `--tls-cert`/`--tls-key` for
mTLS), or I2V_TLS_CA, I2V_TLS_CERT and I2V_TLS_KEY.

Exit status: 0 done; 1 the server refused, the job failed or was cancelled elsewhere (`error: CODE:
message`); 2 bad usage or a local problem, said before anything is sent where it can be (an
address that is not HOST:PORT, a value out of range, an unreadable image, an output path that
cannot be written, a node where a coordinator was meant or the other way round); 130 Ctrl-C
(generate cancels the job first and says what became of it; watch only stops watching).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from i2v_client.cli.args import build_parser, resolve_tls, resolve_where
from i2v_client.cli.context import Cluster, Connector, Context, GrpcConnector, Listing

__all__ = ["Cluster", "Connector", "GrpcConnector", "Listing", "main"]


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    connector: Connector | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    listing: Listing | None = None,
) -> int:
    """Run `i2v` on `argv` (default: the command line) and `env` (default: os.environ), reaching
    the servers through `connector` (default: gRPC) and writing to `out` and `err` (default: stdout
    and stderr; argparse's help and usage messages too). Returns the exit status; bad usage raises
    SystemExit(2) as argparse does."""
    ctx = Context(
        connector=GrpcConnector() if connector is None else connector,
        out=sys.stdout if out is None else out,
        err=sys.stderr if err is None else err,
        clock=clock,
        listing=Listing() if listing is None else listing,
    )
    with contextlib.redirect_stdout(ctx.out), contextlib.redirect_stderr(ctx.err):
        args = build_parser(ctx.listing).parse_args(argv)
        environ = os.environ if env is None else env
        try:
            resolve_where(args, environ)
            tls = resolve_tls(args, environ)
        except ValueError as exc:
            args.subparser.error(str(exc))
    if connector is None:
        ctx = dataclasses.replace(ctx, connector=GrpcConnector(args.token, tls))
    code: int = args.run(args, ctx)
    return code
