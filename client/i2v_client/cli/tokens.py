"""Tokens on the command line: where a command's token comes from (--token, --token-file,
$I2V_TOKEN, $I2V_TOKEN_FILE, first found), and `i2v token new`, which makes one for the servers'
tokens file.

A token on the command line shows in the process list; --token-file or $I2V_TOKEN keeps it out.
"""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Mapping
from typing import Any

from i2v_client.cli.context import EXIT_OK, EXIT_USAGE, Context
from i2v_common.tokens import read_token
from i2v_contract import auth

TOKEN_ENV, TOKEN_FILE_ENV = "I2V_TOKEN", "I2V_TOKEN_FILE"
TOKEN_BYTES = 32  # 256 random bits: 43 URL-safe characters


def add_token_flags(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help=f"bearer token for servers with --tokens-file (default ${TOKEN_ENV}; visible in the process "
        "list: prefer --token-file)",
    )
    group.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help=f"read the token from this file (default ${TOKEN_FILE_ENV})",
    )


def resolve_token(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Sets args.token (None = send none) and args.token_from (where it came from, for messages);
    ValueError when the named file holds no token."""
    flag, flag_file = getattr(args, "token", None), getattr(args, "token_file", None)
    args.token, args.token_from = None, ""
    if not hasattr(args, "token_file"):
        return
    for value, kind, name in (
        (flag, "token", "--token"),
        (flag_file, "file", "--token-file"),
        (env.get(TOKEN_ENV), "token", f"${TOKEN_ENV}"),
        (env.get(TOKEN_FILE_ENV), "file", f"${TOKEN_FILE_ENV}"),
    ):
        if not value:
            continue
        token = read_token(value) if kind == "file" else value.strip()
        _, problem = auth.bearer_token([f"Bearer {token}"])
        if problem:
            raise ValueError(f"{name}: {problem}")
        args.token, args.token_from = token, name
        return


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    token = sub.add_parser(
        "token",
        help="make a bearer token for the servers' tokens file",
        description="Make a bearer token: give the token to its client, append the line to the "
        "tokens file of every coordinator (and node) that should accept it; they reload it by themselves.",
    )
    what = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    new = what.add_parser("new", help="a fresh random token and its tokens-file line")
    new.add_argument("--name", required=True, help="the client's name (who owns the jobs it submits)")
    new.add_argument("--role", choices=auth.ROLES, default=auth.CLIENT, help="admin: every job and the fleet")
    new.add_argument("--json", action="store_true", help="JSON for scripts instead of text")
    new.set_defaults(run=cmd_token_new, subparser=new, local=False, token_file=None, token=None)


def cmd_token_new(args: argparse.Namespace, ctx: Context) -> int:
    problem = auth.name_problem(args.name)
    if problem:
        ctx.err.write(f"error: --name: {problem}\n")
        return EXIT_USAGE
    token = secrets.token_urlsafe(TOKEN_BYTES)
    line = auth.token_line(token, args.name, args.role)
    if args.json:
        ctx.out.write(json.dumps({"name": args.name, "role": args.role, "token": token, "line": line}) + "\n")
        return EXIT_OK
    ctx.out.write(
        f"token:  {token}\n"
        f"line:   {line}\n"
        "Give the token to the client (it is shown only now; the servers keep only its hash) and append "
        "the line to the tokens file.\n"
    )
    return EXIT_OK
