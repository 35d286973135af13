"""How an s3:// artifact store is reached (through fsspec's s3fs): the options its filesystem opens with.

Credentials, region and endpoint come from the standard AWS environment, read by botocore itself
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, AWS_DEFAULT_REGION,
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL), or from fsspec's own FSSPEC_S3_* variables (such as
FSSPEC_S3_ENDPOINT_URL). I2V_S3_ENDPOINT_URL names an S3-compatible server (MinIO, Ceph, moto) and
wins over both. Pure: the environment is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlparse

ENDPOINT_ENV = "I2V_S3_ENDPOINT_URL"
SCHEMES = ("s3", "s3a")


def storage_options(url: str, env: Mapping[str, str]) -> dict[str, object]:
    """Options for fsspec's filesystem of `url`; none for schemes other than s3. ValueError names a
    bad I2V_S3_ENDPOINT_URL."""
    if urlparse(url).scheme not in SCHEMES:
        return {}
    options: dict[str, object] = {
        # Other processes write and delete in the same bucket: a cached listing would be stale.
        "use_listings_cache": False,
        # A store of its own, so the environment is read when the store is opened.
        "skip_instance_cache": True,
    }
    endpoint = env.get(ENDPOINT_ENV, "").strip()
    if endpoint:
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"{ENDPOINT_ENV}={endpoint!r} is not an endpoint; give http(s)://HOST[:PORT]")
        options["endpoint_url"] = endpoint
    return options
