"""The restricted unpickler bounds allocation before constructing: a tiny pickle cannot
ask an allow-listed constructor for gigabytes (class: size argument from the pickle)."""

import pickle

import numpy as np
import pytest

from ctxbench.io import safe_pickle


def reduce_pickle(module: str, name: str, arg) -> bytes:
    """GLOBAL module.name; arg; REDUCE -- the shape of the 35-byte attack."""
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n"
            + pickle.dumps((arg,), protocol=2)[2:-1] + b"R.")


@pytest.mark.parametrize("module,name,arg", [
    ("builtins", "bytearray", 4_000_000_000),
    ("__builtin__", "bytearray", 4_000_000_000),
])
def test_huge_size_arguments_are_refused_before_allocating(module, name, arg):
    data = reduce_pickle(module, name, arg)
    assert len(data) < 64
    with pytest.raises(safe_pickle.UnsafePickleError, match="asks for 4,000,000,000 elements"):
        safe_pickle.loads(data)


def test_real_arrays_and_small_bytearrays_still_load():
    arr = np.arange(200_000, dtype=np.float64).reshape(400, 500)
    assert np.array_equal(safe_pickle.loads(pickle.dumps(arr, protocol=2)), arr)
    assert safe_pickle.loads(reduce_pickle("builtins", "bytearray", 1000)) == bytearray(1000)
