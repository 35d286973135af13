"""What authenticating a call costs as the tokens file grows: TokensFile.authenticate (a stat of the
file, the bearer header's check, one SHA-256 and a lookup) with 10, 1,000 and 100,000 tokens, and
the same with the file just rewritten (a reload) for scale.

Run from the repository root:
    .venv/bin/python benchmarks/token_auth.py [--calls 20000]
Printed: per size, the median and p10..p90 of batches of 1,000 calls, in microseconds per call, and
the ratio of each size's median over the smallest's.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from i2v_common.tokens import TokensFile
from i2v_contract import auth

SIZES = (10, 1_000, 100_000)
BATCH = 1_000


def tokens_file(directory: Path, count: int) -> tuple[Path, str]:
    """A file of `count` tokens and one of them (the last: no early exit can flatter a scan)."""
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    path = directory / f"tokens-{count}"
    path.write_text("".join(f"{auth.token_line(t, f'client-{i}')}\n" for i, t in enumerate(tokens)))
    return path, tokens[-1]


def per_call_us(path: Path, token: str, calls: int) -> list[float]:
    store = TokensFile(path)
    metadata = (("authorization", f"Bearer {token}"),)
    assert isinstance(store.authenticate(metadata), auth.Principal)
    batches = []
    for _ in range(max(1, calls // BATCH)):
        started = time.perf_counter()
        for _ in range(BATCH):
            store.authenticate(metadata)
        batches.append((time.perf_counter() - started) / BATCH * 1e6)
    return batches


def reload_ms(path: Path, token: str) -> float:
    store = TokensFile(path)
    path.write_text(path.read_text() + "# touched\n")  # a new size: the next call re-reads
    started = time.perf_counter()
    store.authenticate((("authorization", f"Bearer {token}"),))
    return (time.perf_counter() - started) * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20_000, help="calls per size")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="i2v-token-bench-") as tmp:
        base = None
        for count in SIZES:
            path, token = tokens_file(Path(tmp), count)
            batches = sorted(per_call_us(path, token, a.calls))
            median = statistics.median(batches)
            base = base or median
            p10, p90 = batches[len(batches) // 10], batches[(len(batches) * 9) // 10]
            reload = reload_ms(path, token)
            print(
                f"{count:>7} tokens: {median:6.2f} us/call [p10 {p10:.2f} .. p90 {p90:.2f}]"
                f"  x{median / base:.2f} vs {SIZES[0]}; a reload after a change {reload:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
