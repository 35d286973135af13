"""Weight dtype names: canonical names, aliases, bytes per parameter."""

from __future__ import annotations

import pytest

from i2v_contract.dtypes import canonical_dtype, dtype_bytes


@pytest.mark.parametrize(
    ("name", "size"),
    [
        pytest.param("float16", 2, id="float16"),
        pytest.param("torch.float16", 2, id="torch-float16"),
        pytest.param("bfloat16", 2, id="bfloat16"),
        pytest.param("float32", 4, id="float32"),
        pytest.param("torch.float32", 4, id="torch-float32"),
        pytest.param("fp16", 2, id="alias-fp16"),
        pytest.param("bf16", 2, id="alias-bf16"),
        pytest.param("fp32", 4, id="alias-fp32"),
    ],
)
def test_dtype_bytes(name: str, size: int) -> None:
    assert dtype_bytes(name) == size


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        pytest.param("float16", "float16", id="canonical"),
        pytest.param("FP16", "float16", id="alias-any-case"),
        pytest.param("bf16", "bfloat16", id="alias-bf16"),
        pytest.param("torch.float32", "float32", id="torch-prefix"),
    ],
)
def test_canonical_dtype(name: str, canonical: str) -> None:
    assert canonical_dtype(name) == canonical


@pytest.mark.parametrize("name", [pytest.param("int3", id="unknown"), pytest.param("", id="empty")])
def test_dtype_bytes_unknown(name: str) -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        dtype_bytes(name)
