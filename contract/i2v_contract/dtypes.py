"""Weight dtypes by name: the canonical names a node accepts, their aliases, bytes per parameter.

Torch is not imported here: the node's loader maps a canonical name to its torch dtype.
"""

from __future__ import annotations

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
ALIASES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def canonical_dtype(name: str) -> str:
    """'float16', 'fp16', 'FP16', 'torch.float16' -> 'float16'; ValueError for any other name."""
    key = name.removeprefix("torch.").lower()
    key = ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        known = ", ".join([*DTYPE_BYTES, *ALIASES])
        raise ValueError(f"unknown dtype {name!r}; use float16, bfloat16 or float32 (known: {known})")
    return key


def dtype_bytes(name: str) -> int:
    """Bytes per parameter of a dtype name ('float16', 'torch.float32', 'bf16', ...)."""
    return DTYPE_BYTES[canonical_dtype(name)]
