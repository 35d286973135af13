"""How a process reaches a secured etcd: TLS (a CA, optionally a client certificate) and etcd
authentication (a user whose password comes from a file, never from the command line).

The same five flags in every server, each also from the environment: --etcd-ca [I2V_ETCD_CA],
--etcd-cert [I2V_ETCD_CERT], --etcd-key [I2V_ETCD_KEY], --etcd-user [I2V_ETCD_USER],
--etcd-password-file [I2V_ETCD_PASSWORD_FILE]. The settings are checked once at startup, so a bad
path stops the process with a message naming the flag. The password appears in no repr, log line
or error message.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from i2v_common.tls import signature

# (flag, environment variable, argparse dest, help)
_FLAGS = (
    ("--etcd-ca", "I2V_ETCD_CA", "etcd_ca", "CA certificate (PEM) that signed etcd's server certificates; "
     "turns on TLS to etcd"),
    ("--etcd-cert", "I2V_ETCD_CERT", "etcd_cert", "client certificate (PEM) presented to etcd "
     "(for etcd's --client-cert-auth); with --etcd-key"),
    ("--etcd-key", "I2V_ETCD_KEY", "etcd_key", "private key (PEM) of --etcd-cert"),
    ("--etcd-user", "I2V_ETCD_USER", "etcd_user", "etcd user to authenticate as; with --etcd-password-file"),
    ("--etcd-password-file", "I2V_ETCD_PASSWORD_FILE", "etcd_password_file",
     "file holding the etcd user's password (one line)"),
)  # fmt: skip


# gRPC's words when the two ends disagree about TLS: a plaintext client reaching a TLS port sees the
# socket closed; a TLS client sees a failed handshake (plaintext port, unknown CA, missing client
# certificate).
_PLAINTEXT_REFUSED = ("Socket closed", "Connection reset")
_HANDSHAKE_FAILED = ("Handshake", "TSI_", "SSL", "certificate")


def transport_hint(failures: Sequence[str], *, tls: bool) -> str:
    """A sentence to append to "etcd did not answer" when the failures look like a TLS mismatch."""
    if tls and any(marker in f for f in failures for marker in _HANDSHAKE_FAILED):
        return (
            "; the TLS handshake with etcd failed: check that etcd serves TLS on this port (https "
            "client URLs), that --etcd-ca signed its certificate and names this host, and, when etcd "
            "runs with --client-cert-auth, that --etcd-cert/--etcd-key hold a certificate its CA signed"
        )
    if not tls and any(marker in f for f in failures for marker in _PLAINTEXT_REFUSED):
        return (
            "; if etcd serves TLS (https client URLs), give --etcd-ca, and --etcd-cert/--etcd-key "
            "when it requires client certificates"
        )
    return ""


class EtcdSecurityError(ValueError):
    """The etcd security settings are unusable; the message names the flag and what to fix."""


@dataclass(frozen=True)
class EtcdSecurity:
    """Plaintext and no authentication when empty (the default)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str = ""
    password: str = field(default="", repr=False)

    @property
    def tls(self) -> bool:
        return self.ca is not None or self.cert is not None

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the PEM files now (each new channel reads the files as they are then)."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes() if self.ca else None,
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )

    def fingerprint(self) -> tuple[tuple[int, int, int], ...]:
        """What changes when a PEM file is replaced or rewritten: new certificates to load."""
        return signature([path for path in (self.ca, self.cert, self.key) if path is not None])

    def describe(self) -> str:
        """For the startup log line: what is on, never the password."""
        parts = []
        if self.tls:
            parts.append("TLS" + (" with a client certificate" if self.cert else ""))
        if self.user:
            parts.append(f"as user {self.user!r}")
        return ", ".join(parts) or "plaintext, no authentication"


def add_etcd_security_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    for flag, env, dest, text in _FLAGS:
        metavar = "NAME" if dest == "etcd_user" else "PATH"
        parser.add_argument(flag, dest=dest, default=None, metavar=metavar, help=f"{text} [{env}]")


def given_on_command_line(ns: argparse.Namespace) -> list[str]:
    """The etcd security flags given explicitly (they only make sense with etcd endpoints)."""
    return [flag for flag, _, dest, _ in _FLAGS if getattr(ns, dest) is not None]


def etcd_security_from_args(ns: argparse.Namespace) -> EtcdSecurity:
    """The settings from the parsed flags, else the environment; EtcdSecurityError names what is wrong."""
    values: dict[str, tuple[str, str]] = {}  # dest -> (the name it came from, its value)
    for flag, env, dest, _ in _FLAGS:
        if getattr(ns, dest) is not None:
            values[dest] = (flag, getattr(ns, dest))
        elif os.environ.get(env):
            values[dest] = (env, os.environ[env])
    return load_etcd_security(values)


def load_etcd_security(values: dict[str, tuple[str, str]]) -> EtcdSecurity:
    """values: argparse dest -> (flag or variable name, value) for each setting given."""
    ca, cert, key = (_pem(values[d]) if d in values else None for d in ("etcd_ca", "etcd_cert", "etcd_key"))
    if (cert is None) != (key is None):
        raise EtcdSecurityError(
            "--etcd-cert and --etcd-key go together: give the client certificate and its key, or neither"
        )
    user_source = values.get("etcd_user")
    user = user_source[1].strip() if user_source else ""
    password_file = values.get("etcd_password_file")
    if user_source and password_file is None:
        raise EtcdSecurityError(
            f"{user_source[0]} needs --etcd-password-file (or I2V_ETCD_PASSWORD_FILE): a file holding "
            "its password (passwords are never taken on the command line)"
        )
    if user_source and not user:
        raise EtcdSecurityError(f"{user_source[0]} is empty: name the etcd user")
    if password_file is not None and not user:
        raise EtcdSecurityError(
            f"{password_file[0]} needs --etcd-user (or I2V_ETCD_USER): the etcd user the password is for"
        )
    password = _password(password_file) if password_file else ""
    return EtcdSecurity(ca=ca, cert=cert, key=key, user=user, password=password)


def _read(source: tuple[str, str]) -> bytes:
    name, value = source
    try:
        return Path(value).read_bytes()
    except OSError as err:
        raise EtcdSecurityError(f"{name} {value}: cannot read it ({err.strerror})") from None


def _pem(source: tuple[str, str]) -> Path:
    if b"-----BEGIN " not in _read(source):
        raise EtcdSecurityError(f"{source[0]} {source[1]}: not a PEM file (no '-----BEGIN' line)")
    return Path(source[1])


def _password(source: tuple[str, str]) -> str:
    try:
        text = _read(source).decode()
    except UnicodeDecodeError:
        raise EtcdSecurityError(f"{source[0]} {source[1]}: not UTF-8 text") from None
    password = text.rstrip("\r\n")  # one line; spaces inside or around the password are kept
    if not password:
        raise EtcdSecurityError(f"{source[0]} {source[1]}: the file is empty; write the password into it")
    return password
