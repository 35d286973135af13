"""Transport security: which certificate files a process uses, the gRPC credentials made from
them, and the names in a caller's certificate.

Servers read their certificate, key and client CA again when the files change (a handshake after
the change uses the new ones; open connections keep theirs), so a certificate is rotated by
replacing its files, without a restart. A replaced pair is checked first (the key must match the
certificate): a half-written rotation keeps the old pair and logs why. Channels read the files when
they are made; ChannelFactory (channels.py) notices a change and rebuilds them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)

CERT_ENV, KEY_ENV, CLIENT_CA_ENV, CA_ENV = "I2V_TLS_CERT", "I2V_TLS_KEY", "I2V_TLS_CLIENT_CA", "I2V_TLS_CA"
SERVER_NAME_ENV = "I2V_TLS_SERVER_NAME"


class TlsConfigError(ValueError):
    """Certificate settings that cannot work together, or files that cannot be read; says which."""


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate and key; with `client_ca`, callers must present a certificate it signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def files(self) -> tuple[Path, ...]:
        return (self.cert, self.key, *([self.client_ca] if self.client_ca else []))


@dataclass(frozen=True)
class ClientTls:
    """What a caller verifies servers against (`ca`; None: the system's roots) and, for servers
    that require one, its own certificate and key."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    # Verify servers' certificates against this name instead of the address dialed: pods are dialed
    # by IP, which a certificate shared by every pod of a role cannot name.
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TlsConfigError("a client certificate needs both --tls-cert and --tls-key")

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.ca, self.cert, self.key) if p is not None)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise TlsConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None


def _check_pair(cert: Path, key: Path) -> None:
    """TlsConfigError unless `key` is the private key of the certificate in `cert`."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as err:
        raise TlsConfigError(f"{cert} and {key} are not a certificate and its key: {err}") from None


def _check_ca(path: Path, what: str) -> bytes:
    """The CA file's bytes; TlsConfigError unless it holds PEM certificates."""
    data = _read(path, what)
    try:
        if not data.strip():
            raise ValueError("the file is empty")
        ssl.create_default_context(cadata=data.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError) as err:
        raise TlsConfigError(f"{what} {path} holds no PEM certificate: {err}") from None
    return data


def signature(files: Sequence[Path]) -> tuple[tuple[int, int, int], ...]:
    """What changes when any of `files` is replaced or rewritten (inode, size, mtime)."""
    out = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            out.append((0, 0, 0))
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class _ServerFiles:
    """The fetcher gRPC calls at each handshake: a new configuration when the files changed and
    still make a valid pair, None (keep the current one) otherwise."""

    def __init__(self, tls: ServerTls) -> None:
        self._tls = tls
        self._lock = threading.Lock()  # gRPC may call from more than one thread
        self._seen = signature(tls.files())
        self._contents = self._load()
        self.initial = self._configuration(self._contents)

    def _load(self) -> tuple[bytes, bytes, bytes | None]:
        tls = self._tls
        _check_pair(tls.cert, tls.key)
        ca = _check_ca(tls.client_ca, "client CA") if tls.client_ca else None
        return _read(tls.cert, "certificate"), _read(tls.key, "key"), ca

    @staticmethod
    def _configuration(contents: tuple[bytes, bytes, bytes | None]) -> Any:
        cert, key, ca = contents
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def __call__(self) -> Any:
        with self._lock:
            now = signature(self._tls.files())
            if now == self._seen:
                return None
            self._seen = now
            try:
                contents = self._load()
            except Exception as err:  # never into gRPC's handshake: keep serving the old pair
                log.warning("certificate files changed but cannot be used (keeping the old ones): %s", err)
                return None
            if contents == self._contents:
                return None
            self._contents = contents
            log.info("certificate files changed: new connections use %s", self._tls.cert)
            return self._configuration(contents)


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """Credentials that follow the files (TlsConfigError if they cannot be used now)."""
    files = _ServerFiles(tls)
    return grpc.dynamic_ssl_server_credentials(
        files.initial, files, require_client_authentication=tls.client_ca is not None
    )


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    """Credentials from the files as they are now (TlsConfigError if unreadable)."""
    if tls.cert is not None and tls.key is not None:
        _check_pair(tls.cert, tls.key)
    return grpc.ssl_channel_credentials(
        root_certificates=_check_ca(tls.ca, "CA") if tls.ca else None,
        private_key=_read(tls.key, "key") if tls.key else None,
        certificate_chain=_read(tls.cert, "certificate") if tls.cert else None,
    )


_NOT_NAMED = (
    "has a certificate that does not name this address: dial a name it has, or pass the name it has "
    "with --tls-server-name (a coordinator: --tls-node-name, --tls-peer-name)"
)
# gRPC's words for a failed TLS connection -> what to do (the flags are the same on every process).
_TLS_FAILURES = (
    ("WRONG_VERSION_NUMBER", "speaks plaintext, not TLS: drop --tls-ca (or give the server --tls-cert)"),
    (
        "CERTIFICATE_VERIFY_FAILED",
        "has a certificate that the CA in --tls-ca did not sign: pass the CA that signed it",
    ),
    *(
        (words, _NOT_NAMED)
        for words in ("not in peer certificate", "Hostname Verification Check failed")  # gRPC's two wordings
    ),
    (
        "Socket closed",
        "ended the TLS connection: it requires a client certificate that its client CA signed "
        "(pass --tls-cert and --tls-key)",
    ),
)
_MAYBE_TLS = "may speak TLS (it hung up on plaintext): pass --tls-ca with the CA that signed its certificate"


def tls_failure_hint(details: str, secure: bool) -> str | None:
    """What to do about a failed connection whose gRPC details are `details`, from a channel that
    speaks TLS (`secure`) or not; None when the words are not about TLS."""
    if secure:
        return next((ours for theirs, ours in _TLS_FAILURES if theirs in details), None)
    # A TLS server hangs up on a plaintext hello; so does a server going away, hence "may".
    return _MAYBE_TLS if "Socket closed" in details else None


def peer_names(context: Any) -> tuple[str, ...]:
    """The names (CN and subject alternative names) in the verified certificate of the caller on
    `context` (a grpc ServicerContext); () when it presented none."""
    auth = context.auth_context() or {}
    names: list[str] = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth.get(key, ()):
            name = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            if name not in names:
                names.append(name)
    return tuple(names)


def _env_path(env: str) -> Path | None:
    value = os.environ.get(env, "")
    return Path(value) if value else None


def add_server_flags(parser: argparse.ArgumentParser, *, peer_ca: bool = False) -> None:
    """--tls-cert, --tls-key and --tls-client-ca, each defaulting to its environment variable; with
    `peer_ca` also --tls-ca, for a server that calls other servers (the coordinator)."""
    group = parser.add_argument_group("transport security (without --tls-cert: plaintext)")
    group.add_argument(
        "--tls-cert",
        type=Path,
        default=_env_path(CERT_ENV),
        metavar="PATH",
        help=f"serve gRPC over TLS with this certificate (PEM; re-read when it changes; ${CERT_ENV}); "
        "no plaintext port is opened then",
    )
    group.add_argument(
        "--tls-key", type=Path, default=_env_path(KEY_ENV), metavar="PATH", help=f"its key (${KEY_ENV})"
    )
    group.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_env_path(CLIENT_CA_ENV),
        metavar="PATH",
        help=f"require callers to present a certificate this CA signed (mTLS; ${CLIENT_CA_ENV})",
    )
    if peer_ca:
        group.add_argument(
            "--tls-ca",
            type=Path,
            default=_env_path(CA_ENV),
            metavar="PATH",
            help="call nodes and peer coordinators over TLS, verified against this CA, presenting "
            f"--tls-cert as the client certificate (${CA_ENV})",
        )
        group.add_argument(
            "--tls-node-name",
            default=None,
            metavar="NAME",
            help="check that nodes' certificates name NAME instead of the address dialed (nodes "
            "dialed by pod IP, one certificate for all)",
        )
        group.add_argument(
            "--tls-peer-name",
            default=None,
            metavar="NAME",
            help="likewise for peer coordinators' certificates (a standby forwarding to the leader)",
        )


def add_client_flags(group: argparse._ActionsContainer) -> None:
    """--tls-ca, --tls-cert and --tls-key for a process that calls TLS servers (default None: the
    caller takes them from the environment, client_tls_from_env)."""
    group.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"speak TLS, verifying servers against this CA (PEM; default ${CA_ENV})",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"client certificate, for servers that require one (default ${CERT_ENV})",
    )
    group.add_argument(
        "--tls-key", type=Path, default=None, metavar="PATH", help=f"its key (default ${KEY_ENV})"
    )
    group.add_argument(
        "--tls-server-name",
        default=None,
        metavar="NAME",
        help="check the servers' certificates name NAME instead of the address dialed (default "
        f"${SERVER_NAME_ENV})",
    )


def client_tls_from_env(
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    env: Mapping[str, str],
    server_name: str | None = None,
) -> ClientTls | None:
    """client_tls_from with each setting not given taken from `env` (I2V_TLS_CA, _CERT, _KEY,
    _SERVER_NAME)."""

    def pick(given: Path | None, name: str) -> Path | None:
        return given if given is not None else (Path(env[name]) if env.get(name) else None)

    tls = client_tls_from(pick(ca, CA_ENV), pick(cert, CERT_ENV), pick(key, KEY_ENV))
    return named(tls, server_name or env.get(SERVER_NAME_ENV) or None, "--tls-server-name")


def server_tls_from(cert: Path | None, key: Path | None, client_ca: Path | None) -> ServerTls | None:
    """The server settings from the flags; None for plaintext. TlsConfigError names what is missing."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsConfigError("--tls-client-ca needs --tls-cert and --tls-key (mTLS runs over TLS)")
        return None
    if cert is None or key is None:
        raise TlsConfigError("TLS needs both --tls-cert and --tls-key")
    tls = ServerTls(cert, key, client_ca)
    _ServerFiles(tls)  # readable and a matching pair now, or say so at start
    return tls


def client_tls_from(ca: Path | None, cert: Path | None, key: Path | None) -> ClientTls | None:
    """A client's settings from the flags; None for plaintext (no file given)."""
    if ca is None and cert is None and key is None:
        return None
    tls = ClientTls(ca, cert, key)
    channel_credentials(tls)  # readable now, or say so at start
    return tls


def named(tls: ClientTls | None, server_name: str | None, flag: str) -> ClientTls | None:
    """`tls` checking servers' certificates against `server_name` (when given)."""
    if server_name is None:
        return tls
    if tls is None:
        raise TlsConfigError(f"{flag} is checked in the servers' certificates: add --tls-ca")
    return dataclasses.replace(tls, server_name=server_name)


def coordinator_tls(
    cert: Path | None, key: Path | None, client_ca: Path | None, ca: Path | None
) -> tuple[ServerTls | None, ClientTls | None]:
    """A coordinator's port settings and those of its calls to nodes and peers (its own certificate
    is its client certificate); TlsConfigError names what is missing."""
    server = server_tls_from(cert, key, client_ca)
    if ca is None:
        if server is not None:
            raise TlsConfigError(
                "--tls-cert needs --tls-ca: the CA that signed the nodes and peer coordinators this "
                "coordinator calls (they serve TLS as well)"
            )
        return None, None
    if server is None:
        return None, client_tls_from(ca, None, None)
    return server, client_tls_from(ca, server.cert, server.key)
