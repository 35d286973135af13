"""host:port addresses: how every flag, member record and etcd endpoint list is parsed, and what a
server bound to a wildcard advertises to its peers."""

from __future__ import annotations

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' (IPv6 as '[::1]:PORT') -> (host, port); ValueError naming the text and the form."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"address {text!r}: expected host:port, HOST:PORT such as 127.0.0.1:50051 or [::]:50051"
        )
    return host.strip("[]"), int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def advertise(listen: str, port: int | None, hostname: str) -> str:
    """What peers dial for a server bound at `listen` (its actual port `port`, or the one in `listen`
    when None): a wildcard host becomes this machine's `hostname`."""
    host, listen_port = parse_address(listen)
    if host in WILDCARD_HOSTS:
        host = hostname
    return format_address(host, listen_port if port is None else port)


def parse_endpoints(text: str, *, tls: bool = False) -> list[str]:
    """'127.0.0.1:2379,http://10.0.0.2:2379' -> ['127.0.0.1:2379', '10.0.0.2:2379'].

    With tls (the process has TLS settings for etcd) entries may be https://host:port, not http://.
    Raises ValueError naming the bad entry and the expected form.
    """
    endpoints = [_endpoint(raw.strip(), tls) for raw in text.split(",") if raw.strip()]
    if not endpoints:
        raise ValueError(f"no etcd endpoints in {text!r}: give a comma-separated list such as 127.0.0.1:2379")
    return endpoints


def _endpoint(entry: str, tls: bool) -> str:
    scheme_ok = "https" if tls else "http"
    hint = f"etcd endpoint {entry!r}: expected host:port or {scheme_ok}://host:port, e.g. 127.0.0.1:2379"
    address = entry
    if "://" in address:
        scheme, _, address = address.partition("://")
        if scheme.lower() == "https" and not tls:
            raise ValueError(
                f"{hint}; scheme 'https' is not supported without TLS settings for etcd: give --etcd-ca "
                "(and --etcd-cert/--etcd-key when etcd requires client certificates)"
            )
        if scheme.lower() == "http" and tls:
            raise ValueError(
                f"{hint}; 'http' is plaintext, but TLS to etcd is configured (--etcd-ca/--etcd-cert)"
            )
        if scheme.lower() not in ("http", "https"):
            raise ValueError(f"{hint}; scheme {scheme!r} is not supported (http, or https with TLS)")
    address = address.rstrip("/")
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or "/" in address:
        raise ValueError(hint)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{hint}; port must be 1..65535")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in bare and not host.startswith("["):
        raise ValueError(f"{hint}; write IPv6 hosts in brackets, e.g. [::1]:2379")
    if not bare:
        raise ValueError(hint)
    return f"{host}:{int(port_text)}"
