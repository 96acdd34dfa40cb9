"""Plain data across the boundary between the trusted grader and a student's sandboxed worker.

Only data crosses, never code or live objects: ``None``, ``bool``, ``int``,
``float``, ``complex`` is refused, ``str``, ``bytes``, ``list``, ``tuple``,
``dict`` (str or int keys), NumPy arrays and scalars, and torch tensors (sent
as arrays and rebuilt as tensors). Each value is a tagged JSON object; the
decoder rebuilds it with the receiving process's own, untouched NumPy and torch
and rejects anything else, so a student's object cannot run code in the
grader. A sparse tensor is sent as its dense value. Messages are framed with an
8-byte length; the grader reads an answer only if its length is within
``MAX_ANSWER_BYTES`` (checked before a byte of the body is read) and its JSON
nesting within the interpreter's recursion limit, and text comes back without
lone surrogates (which no file, CSV or gradebook can store).
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import struct
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

__all__ = ["WireError", "Oversized", "encode", "decode", "send", "receive", "clean_text", "checks_class",
           "checks_modules", "object_tag", "CHECKS_ENV", "MAX_MESSAGE_BYTES", "MAX_ANSWER_BYTES"]

MAX_MESSAGE_BYTES = 512 * 2**20  # a check's arguments, grader -> worker (the grader's own data)
# An answer, worker -> grader: a float64 tensor of 3 million values fits (a1's largest check output is
# 8 x 32 x 64 x 64 = 1M values: 11 MB as JSON), anything bigger is refused before it is read.
MAX_ANSWER_BYTES = 32 * 2**20
MAX_DEPTH = 32
DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
          "float64"}
TORCH_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16", "float32", "float64"}
# NumPy generators cross as their state (a2's initializers take one).
BIT_GENERATORS = {"PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"}
# Test functions a check passes to a student's function (a2's numerical_gradient takes f): classes of the
# course's own checks whose instances are rebuilt from plain data by ``cls(**obj.__wire__())``. tag -> (module, class)
DATA_CLASSES = {"a2_backprop_init.Objective": ("course_utils.checks.a2_backprop_init", "Objective")}
# Any other such class (a3's drivers, say) needs no entry: a top-level class of a module of course_utils.checks
# that defines ``__wire__`` crosses as "module:Class" (see ``checks_class``).
CHECKS_MODULE = re.compile(r"course_utils\.checks\.[A-Za-z_][A-Za-z0-9_]*")
# The worker's environment names the checks modules whose test objects it may be sent ("name" or "name=file.py",
# comma-separated): it imports and pins them when it starts, before any student code (``worker.Pinned``).
CHECKS_ENV = "COURSE_CHECKS_MODULES"


class WireError(ValueError):
    """A value cannot be sent, or a received message is not valid."""


class Oversized(WireError):
    """A message is longer than the receiver accepts (its body was not read: the channel is out of step)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size:,} bytes is over the limit of {limit:,}")
        self.size, self.limit = size, limit


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate (valid in a Python str, in no UTF-8 file) replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _array(kind: str, array: np.ndarray, extra: dict | None = None) -> dict:
    array = np.asarray(array, order="C")  # (ascontiguousarray would turn a 0-d array into 1-d)
    if array.dtype.name not in DTYPES:
        raise WireError(f"cannot send an array of dtype {array.dtype}: expected one of {sorted(DTYPES)}")
    return {"t": kind, "dtype": array.dtype.name, "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode("ascii"), **(extra or {})}


def encode(value: Any, depth: int = 0) -> Any:
    """A JSON-able, tagged description of ``value`` (raises :class:`WireError` for other types)."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):  # before int/float: np.float64 is a float subclass
        return _array("npscalar", np.asarray(value))
    if isinstance(value, int):
        return {"t": "int", "v": str(int(value))}  # any size, exact
    if isinstance(value, float):
        return {"t": "float", "v": repr(float(value))}  # nan and inf included
    if isinstance(value, bytes):
        return {"t": "bytes", "data": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return {"t": type(value).__name__ if type(value) in (list, tuple) else "list",
                "v": [encode(item, depth + 1) for item in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
            raise WireError("cannot send a dict whose keys are not all str or int")
        return {"t": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        return _array("ndarray", value)
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        return _tensor(torch, value)
    if isinstance(value, np.random.Generator):  # a2's initializers take one: sent as its bit generator's state
        name = type(value.bit_generator).__name__
        if name not in BIT_GENERATORS:
            raise WireError(f"cannot send a generator over {name}: expected one of {sorted(BIT_GENERATORS)}")
        return {"t": "npgenerator", "bit_generator": name, "state": encode(value.bit_generator.state, depth + 1)}
    for tag, (module, name) in DATA_CLASSES.items():  # a check's own test function, sent as its data
        if type(value).__name__ == name and type(value).__module__ == module:
            return {"t": "object", "class": tag, "v": encode(value.__wire__(), depth + 1)}
    cls = type(value)
    if CHECKS_MODULE.fullmatch(cls.__module__) and hasattr(cls, "__wire__"):  # a checks module's test object
        tag = f"{cls.__module__}:{cls.__qualname__}"
        if checks_class(tag) is not cls:
            raise WireError(f"cannot send a {cls.__qualname__}: only top-level classes of course_utils.checks "
                            f"modules cross the wire")
        return {"t": "object", "class": tag, "v": encode(value.__wire__(), depth + 1)}
    raise WireError(f"cannot send a value of type {type(value).__name__}: expected numbers, strings, lists, "
                    f"tuples, dicts, NumPy arrays or tensors")


def _tensor(torch: Any, value: Any) -> dict:
    """A tensor as data: detached, on the CPU, dense (a sparse layout is converted), contiguous."""
    dtype = str(value.dtype).removeprefix("torch.")
    if dtype not in TORCH_DTYPES:
        raise WireError(f"cannot send a tensor of dtype {value.dtype}: expected a real or bool dtype")
    try:
        tensor = value.detach().to("cpu")
        if tensor.layout != torch.strided:  # sparse COO/CSR/...: its value is the dense tensor it stands for
            tensor = tensor.to_dense()
        if dtype == "bfloat16":
            tensor = tensor.float()
        array = tensor.contiguous().numpy()
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as err:
        raise WireError(f"cannot send this tensor ({value.layout}, on {value.device}): expected an ordinary "
                        f"dense or sparse tensor ({type(err).__name__}: {str(err)[:200]})") from None
    return _array("tensor", array, {"torch_dtype": dtype})


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - the course always has torch
        return None
    return torch


def checks_modules(value: str) -> dict[str, str | None]:
    """The checks modules a :data:`CHECKS_ENV` value names: {module name: file to load it from, or None (import it)}."""
    modules: dict[str, str | None] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        name, _, path = entry.partition("=")
        if not CHECKS_MODULE.fullmatch(name):
            raise ValueError(f"{CHECKS_ENV}: {name!r} is not a module of course_utils.checks "
                             f"(expected course_utils.checks.<name>[=<file.py>], comma-separated)")
        modules[name] = path or None
    return modules


def object_tag(cls: type) -> str | None:
    """The tag a test object of class ``cls`` crosses the wire with (None: not a checks' class with ``__wire__``)."""
    for tag, (module, name) in DATA_CLASSES.items():
        if cls.__name__ == name and cls.__module__ == module:
            return tag
    if CHECKS_MODULE.fullmatch(cls.__module__) and "__wire__" in dir(cls):
        return f"{cls.__module__}:{cls.__qualname__}"
    return None


def checks_class(tag: str) -> type | None:
    """The class a test object's tag names: a ``DATA_CLASSES`` tag, or ``"course_utils.checks.<module>:<Class>"``
    for a top-level class of that module that defines ``__wire__``; None for anything else."""
    if tag in DATA_CLASSES:
        module_name, name = DATA_CLASSES[tag]
    else:
        module_name, _, name = tag.partition(":")
        if not CHECKS_MODULE.fullmatch(module_name) or not name.isidentifier():
            return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, name, None)
    if not isinstance(cls, type) or cls.__module__ != module_name or cls.__qualname__ != name \
            or "__wire__" not in dir(cls):
        return None
    return cls


def _decode_array(item: dict) -> np.ndarray:
    dtype, shape = item.get("dtype"), item.get("shape")
    if dtype not in DTYPES or not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise WireError(f"invalid array description (dtype {dtype!r}, shape {shape!r})")
    raw = base64.b64decode(item.get("data", ""), validate=True)
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != count * np.dtype(dtype).itemsize:
        raise WireError(f"array data has {len(raw)} bytes, expected {count * np.dtype(dtype).itemsize}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def decode(item: Any, depth: int = 0, *, objects: bool = False, classes: Mapping[str, type] | None = None) -> Any:
    """Rebuild a value from :func:`encode`'s description, rejecting anything unexpected.

    ``objects=True`` (the worker reading the grader's requests) also rebuilds the checks' own test objects:
    from ``classes`` (tag -> class: the worker's, pinned before any student code ran) or, without it, from the
    class ``checks_class`` imports now. The grader reads the student's answers with the default, plain data only.
    """
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(item, str):
        return clean_text(item)
    if item is None or isinstance(item, bool):
        return item
    if not isinstance(item, dict) or not isinstance(item.get("t"), str):
        raise WireError(f"invalid value description: {str(item)[:80]!r}")
    kind = item["t"]
    try:
        if kind == "int":
            return int(item["v"])
        if kind == "float":
            return float(item["v"])
        if kind == "bytes":
            return base64.b64decode(item["data"], validate=True)
        if kind in ("list", "tuple"):
            items = [decode(x, depth + 1, objects=objects, classes=classes) for x in item["v"]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            return {decode(k, depth + 1): decode(v, depth + 1, objects=objects, classes=classes) for k, v in item["v"]}
        if kind == "ndarray":
            return _decode_array(item)
        if kind == "npscalar":
            return _decode_array(item)[()]
        if kind == "tensor":
            torch = _torch()
            dtype = item.get("torch_dtype")
            if dtype not in TORCH_DTYPES:
                raise WireError(f"invalid tensor dtype {dtype!r}")
            return torch.from_numpy(_decode_array(item)).to(getattr(torch, dtype))
        if kind == "npgenerator":
            name = item.get("bit_generator")
            if name not in BIT_GENERATORS:
                raise WireError(f"invalid bit generator {name!r}")
            bit_generator = getattr(np.random, name)()
            bit_generator.state = decode(item["state"], depth + 1)
            return np.random.Generator(bit_generator)
        if kind == "object":
            if not objects:
                raise WireError("a test object where only plain data may come")
            tag = str(item["class"])
            cls = checks_class(tag) if classes is None else classes.get(tag)
            if cls is None:
                raise WireError(f"unknown test object class {str(item['class'])[:100]!r}")
            data = decode(item["v"], depth + 1)
            if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
                raise WireError(f"invalid {item['class']} data")
            return cls(**data)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, WireError):
            raise
        raise WireError(f"invalid {kind!r} description: {err}") from None
    raise WireError(f"unknown value tag {kind!r}")


def send(stream: IO[bytes], message: dict, limit: int = MAX_MESSAGE_BYTES) -> None:
    """Write one message (a JSON object) with its length in front; :class:`Oversized` if over ``limit``."""
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > limit:
        raise Oversized(len(body), limit)
    stream.write(struct.pack(">Q", len(body)) + body)
    stream.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """``size`` bytes, however many reads it takes (a pipe hands over at most 64 KiB at a time)."""
    parts, missing = [], size
    while missing:
        part = stream.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def receive(stream: IO[bytes], limit: int = MAX_MESSAGE_BYTES) -> dict:
    """Read one message of at most ``limit`` bytes.

    Raises EOFError when the other side has closed, :class:`Oversized` (before
    reading the body) when the message is longer than ``limit``, WireError when
    it is not a JSON object or nests deeper than the recursion limit.
    """
    head = _read_exactly(stream, 8)
    if len(head) < 8:
        raise EOFError("the other side closed the channel")
    (size,) = struct.unpack(">Q", head)
    if size > limit:
        raise Oversized(size, limit)
    body = _read_exactly(stream, size)
    if len(body) < size:
        raise EOFError("the other side closed the channel in the middle of a message")
    try:
        message = json.loads(body)
    except RecursionError:
        raise WireError("message nests deeper than any value the grader accepts") from None
    except ValueError as err:
        raise WireError(f"message is not JSON: {str(err)[:200]}") from None
    if not isinstance(message, dict):
        raise WireError("message is not a JSON object")
    return message
