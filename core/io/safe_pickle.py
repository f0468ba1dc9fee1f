"""A restricted unpickler for untrusted pickles (numpy arrays, pandas DataFrames).

A pickle is a program: loading one with :func:`pickle.load` may import and call
anything (``os.system`` via ``__reduce__``). Dataset files such as the official
EPIC-KITCHENS-100 ``EPIC_100_retrieval_test.pkl`` (a pandas DataFrame) and
``caption_relevancy_EPIC_100_retrieval_test.pkl`` (a numpy array) are pickles, so
they are read here: every global a pickle names is checked against an allow-list
of numpy/pandas reconstructors (plus a few harmless builtins) *before* it is
imported; anything else raises :class:`UnsafePickleError` naming the file and the
refused global, and nothing from the pickle has run.

Old pandas pickles name classes at their historical locations; those are mapped
to today's (pandas' own ``pandas.compat.pickle_compat`` table, and
``numpy.core`` -> ``numpy._core`` for numpy 2) and the *mapped* name must be on
the allow-list too. If the fast C unpickler cannot rebuild an old pandas object,
pandas' compatibility unpickler is used with the same restriction.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any, Iterable

from ..errors import DatasetFormatError

# (module, name) pairs that may be imported while unpickling. Each is a data
# constructor: it builds arrays, dtypes, frames, indexes or blocks from plain
# values and cannot reach the file system, a shell or arbitrary imports.
NUMPY_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy", "array"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "bool_"), ("numpy", "int8"), ("numpy", "int16"), ("numpy", "int32"), ("numpy", "int64"),
    ("numpy", "uint8"), ("numpy", "uint16"), ("numpy", "uint32"), ("numpy", "uint64"),
    ("numpy", "float16"), ("numpy", "float32"), ("numpy", "float64"),
    ("numpy.dtypes", "Float64DType"), ("numpy.dtypes", "Float32DType"), ("numpy.dtypes", "Int64DType"),
    ("numpy.dtypes", "Int32DType"), ("numpy.dtypes", "ObjectDType"), ("numpy.dtypes", "BoolDType"),
    ("numpy.dtypes", "StrDType"),
})
PANDAS_GLOBALS = frozenset({
    ("pandas.core.frame", "DataFrame"), ("pandas.core.series", "Series"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pandas._libs.internals", "_unpickle_block"), ("pandas._libs.internals", "BlockPlacement"),
    ("pandas.core.internals.blocks", "new_block"),
    ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"), ("pandas.core.indexes.multi", "MultiIndex"),
    ("pandas.core.arrays.string_", "StringArray"), ("pandas.core.arrays.string_", "StringDtype"),
    ("pandas.core.arrays.arrow.array", "ArrowExtensionArray"),
    ("pandas.core.arrays.string_arrow", "ArrowStringArray"),
    ("pandas.core.arrays.categorical", "Categorical"), ("pandas.core.dtypes.dtypes", "CategoricalDtype"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    # pandas >= 2 pickles its public names; string columns may be Arrow-backed
    ("pandas", "DataFrame"), ("pandas", "Series"), ("pandas", "Index"), ("pandas", "RangeIndex"),
    ("pandas", "StringDtype"), ("pandas", "NA"),
    ("pandas.arrays", "StringArray"), ("pandas.arrays", "ArrowStringArray"),
    ("pyarrow.lib", "_restore_array"), ("pyarrow.lib", "py_buffer"), ("pyarrow.lib", "type_for_alias"),
})
BUILTIN_GLOBALS = frozenset({
    ("builtins", "slice"), ("builtins", "range"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("builtins", "frozenset"), ("builtins", "set"), ("builtins", "object"),
    ("collections", "OrderedDict"),
    # protocol-2 pickles of bytes objects call _codecs.encode(text, "latin1")
    ("_codecs", "encode"),
})
DEFAULT_ALLOWED = NUMPY_GLOBALS | PANDAS_GLOBALS | BUILTIN_GLOBALS

# historical locations -> today's (numpy 2 moved numpy.core to numpy._core)
_RENAMES = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("pandas.core.internals", "BlockManager"): ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.index", "Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.index", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.indexes.base", "Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.internals.blocks", "new_block"): ("pandas._libs.internals", "_unpickle_block"),
}


class UnsafePickleError(DatasetFormatError):
    """A pickle names a global that is not on the allow-list; nothing was executed."""


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # Python 2 pickles


def _size_of(value: Any) -> int:
    """Elements an integer or a shape tuple asks for (0 for anything else)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        size = 1
        for v in value:
            size *= max(v, 0)
        return size
    return 0


def _bounded(fn, label: str, limit: int, source: str):
    """``fn`` refusing any integer or shape argument asking for more than ``limit``
    elements *before* it allocates (a 35-byte pickle can ask bytearray for 4 GB)."""
    def call(*args, **kwargs):
        for value in (*args, *kwargs.values()):
            if _size_of(value) > limit:
                raise UnsafePickleError(f"{source}: refused to load: '{label}' asks for "
                                        f"{_size_of(value):,} elements, more than this "
                                        f"{limit // 64:,}-byte file can describe")
        return fn(*args, **kwargs)
    return call


# constructors that allocate from a size argument: bounded by the pickle's size
SIZED = {("builtins", "bytearray"), ("numpy._core.multiarray", "_reconstruct")}


def _resolve(module: str, name: str, allowed: frozenset, source: str, limit: int = 1 << 40):
    module = _PY2_MODULES.get(module, module)
    target = _RENAMES.get((module, name), (module, name))
    if target not in allowed:
        raise UnsafePickleError(
            f"{source}: refused to load: the pickle asks for '{module}.{name}', which is not "
            f"an allowed numpy/pandas data constructor. Pickles can run arbitrary code, so only "
            f"array and DataFrame reconstructors are accepted. If this file is genuine, convert "
            f"it to CSV/.npy in a trusted environment and point ctxbench at that file.")
    mod = importlib.import_module(target[0])
    obj = mod
    for part in target[1].split("."):
        obj = getattr(obj, part)
    if target in SIZED:
        return _bounded(obj, f"{target[0]}.{target[1]}", limit, source)
    return obj


class RestrictedUnpickler(pickle.Unpickler):
    """C unpickler whose ``find_class`` only returns allow-listed globals."""

    def __init__(self, file, *, allowed: Iterable[tuple[str, str]] = DEFAULT_ALLOWED,
                 source: str = "<pickle>", size_limit: int = 1 << 40, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = frozenset(allowed)
        self._source = source
        self._limit = size_limit

    def find_class(self, module: str, name: str) -> Any:
        return _resolve(module, name, self._allowed, self._source, self._limit)


def size_limit(data: bytes) -> int:
    """The most elements a constructor may ask for: 64 per byte of the pickle, at
    least 16 Mi (data a pickle describes is in it; zeros need no pickle)."""
    return max(64 * len(data), 1 << 24)


def _compat_unpickler(data: bytes, allowed: frozenset, source: str, encoding: str):
    """pandas' compatibility unpickler (old BlockManager/Index layouts), restricted."""
    from pandas.compat import pickle_compat

    class _Restricted(pickle_compat.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return _resolve(module, name, allowed, source, size_limit(data))

    return _Restricted(io.BytesIO(data), encoding=encoding).load()


def loads(data: bytes, *, allowed: Iterable[tuple[str, str]] = DEFAULT_ALLOWED,
          source: str = "<pickle>", encoding: str = "latin1") -> Any:
    """Unpickle ``data`` allowing only ``allowed`` globals (see module docstring).

    ``encoding="latin1"`` reads Python-2 era numpy pickles correctly."""
    allowed = frozenset(allowed)
    try:
        return RestrictedUnpickler(io.BytesIO(data), allowed=allowed, source=source,
                                   size_limit=size_limit(data), encoding=encoding).load()
    except UnsafePickleError:
        raise
    except (TypeError, AttributeError, ValueError, ImportError) as first:
        # An old pandas layout the C unpickler cannot rebuild: pandas' compat path.
        try:
            return _compat_unpickler(data, allowed, source, encoding)
        except UnsafePickleError:
            raise
        except Exception as exc:
            raise DatasetFormatError(f"{source}: not a readable numpy/pandas pickle "
                                     f"({type(first).__name__}: {first}; compat reader: "
                                     f"{type(exc).__name__}: {exc})") from exc
    except (pickle.UnpicklingError, EOFError) as exc:
        raise DatasetFormatError(f"{source}: corrupt or truncated pickle ({exc})") from exc


def load(path: str | Path, **kwargs) -> Any:
    """Read and restricted-unpickle the file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: file not found") from None
    return loads(data, source=str(path), **kwargs)
