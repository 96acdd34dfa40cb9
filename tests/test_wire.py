"""Plain data across the grading boundary: what goes in comes out, anything else is refused."""

import json
import math

import numpy as np
import pytest
import torch

from course_utils.grading.wire import WireError, decode, encode, receive, send


def roundtrip(value):
    return decode(json.loads(json.dumps(encode(value))))


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 2**80, 1.5, "text ✓", b"\x00\xff",
    [1, [2, (3, 4)]], (1, "a"), {"a": 1, 2: [3.0]}, {},
])
def test_python_values_come_back_equal_and_of_the_same_type(value):
    back = roundtrip(value)
    assert back == value and type(back) is type(value)


def test_floats_keep_nan_and_infinity():
    back = roundtrip([math.nan, math.inf, -math.inf, -0.0])
    assert math.isnan(back[0]) and back[1:3] == [math.inf, -math.inf] and math.copysign(1, back[3]) == -1


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint8", "bool"])
def test_arrays_keep_dtype_shape_and_values(dtype):
    array = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    back = roundtrip(array[:, ::2])  # non-contiguous input
    assert isinstance(back, np.ndarray) and back.dtype == dtype and np.array_equal(back, array[:, ::2])


def test_numpy_scalars_stay_numpy_scalars():
    for scalar in (np.int64(3), np.float32(0.5), np.bool_(True)):
        back = roundtrip(scalar)
        assert type(back) is type(scalar) and back == scalar
    assert not isinstance(roundtrip(np.int64(3)), int)  # a check that wants an int must see the difference


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bool, torch.float16])
def test_tensors_come_back_as_tensors(dtype):
    tensor = torch.arange(6).reshape(2, 3).to(dtype)
    back = roundtrip(tensor.t())
    assert isinstance(back, torch.Tensor) and back.dtype == dtype and torch.equal(back, tensor.t())


def test_a_tensor_that_requires_grad_is_sent_as_data():
    back = roundtrip(torch.ones(2, requires_grad=True) * 2)
    assert not back.requires_grad and back.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("value, message", [
    (object(), "cannot send a value of type object"),
    (lambda: 1, "cannot send a value of type function"),
    ({(1, 2): 3}, "keys are not all str or int"),
    (np.array([1 + 2j]), "dtype complex128"),
    (np.array(["a"]), "dtype <U1"),
    (torch.ones(1, dtype=torch.complex64), "real or bool dtype"),
])
def test_other_values_are_refused_with_what_is_expected(value, message):
    with pytest.raises(WireError, match=message):
        encode(value)


def test_deep_nesting_is_refused():
    value = []
    for _ in range(40):
        value = [value]
    with pytest.raises(WireError, match="deeper than"):
        encode(value)


@pytest.mark.parametrize("item, message", [
    ({"t": "pickle", "data": ""}, "unknown value tag"),
    ({"t": "ndarray", "dtype": "object", "shape": [1], "data": ""}, "invalid array description"),
    ({"t": "ndarray", "dtype": "float32", "shape": [4], "data": "AAAA"}, "expected 16"),
    ({"t": "tensor", "dtype": "float32", "shape": [0], "data": "", "torch_dtype": "complex64"}, "invalid tensor"),
    ({"t": "int", "v": "1e9"}, "invalid 'int'"),
    ({"not": "tagged"}, "invalid value description"),
    (3, "invalid value description"),
])
def test_malformed_descriptions_are_rejected(item, message):
    with pytest.raises(WireError, match=message):
        decode(item)


def test_framing_round_trip_and_eof(tmp_path):
    path = tmp_path / "channel"
    with open(path, "wb") as f:
        send(f, {"id": 1, "value": encode([1, 2])})
        send(f, {"id": 2})
    with open(path, "rb") as f:
        assert decode(receive(f)["value"]) == [1, 2]
        assert receive(f) == {"id": 2}
        with pytest.raises(EOFError):
            receive(f)
    path.write_bytes(b"\x00\x00\x00\x00\x00\x00\x00\x05nope!")
    with open(path, "rb") as f, pytest.raises(WireError, match="not JSON"):
        receive(f)


def test_a_large_message_crosses_a_pipe_whole():
    """A pipe delivers at most 64 KiB per read: receive must keep reading (a 4 MB tensor here)."""
    import os
    import threading

    import torch

    read_fd, write_fd = os.pipe()
    tensor = torch.arange(1_000_000, dtype=torch.float32)
    with os.fdopen(read_fd, "rb", buffering=0) as reader, os.fdopen(write_fd, "wb") as writer:
        sender = threading.Thread(target=send, args=(writer, {"value": encode(tensor)}))
        sender.start()
        back = decode(receive(reader)["value"])
        sender.join()
    assert torch.equal(back, tensor)


# --- what an answer may be: checked at the boundary ------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_sparse_tensor_is_sent_as_its_dense_value(layout):
    dense = torch.tensor([[0.0, 2.0, 0.0], [1.5, 0.0, 0.0]], dtype=torch.float64)
    sparse = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    back = roundtrip(sparse)
    assert back.layout == torch.strided and back.dtype == torch.float64 and torch.equal(back, dense)


def test_a_tensor_that_is_not_plain_data_is_refused_with_a_clear_message():
    with pytest.raises(WireError, match="cannot send this tensor .* on meta"):
        encode(torch.empty(2, 3, device="meta"))


def test_a1s_largest_check_output_fits_in_an_answer():
    """(8, 32, 64, 64), a1's largest check output so far (the old speed check's million values), even as
    float64, is well inside MAX_ANSWER_BYTES."""
    import io

    from course_utils.grading.wire import MAX_ANSWER_BYTES

    stream = io.BytesIO()
    send(stream, {"id": 1, "value": encode(torch.zeros(8, 32, 64, 64, dtype=torch.float64))}, limit=MAX_ANSWER_BYTES)
    assert 8 * 2**20 < len(stream.getvalue()) < MAX_ANSWER_BYTES / 2


def test_an_oversized_message_is_refused_before_its_body_is_read():
    import io
    import struct

    from course_utils.grading.wire import Oversized

    stream = io.BytesIO(struct.pack(">Q", 2**40) + b"{}")
    with pytest.raises(Oversized, match="1,099,511,627,776 bytes is over the limit of 1,000"):
        receive(stream, limit=1000)
    assert stream.tell() == 8  # only the length was read
    with pytest.raises(Oversized):
        send(io.BytesIO(), {"value": encode(b"x" * 2000)}, limit=1000)


def test_a_message_nested_too_deeply_is_refused_not_a_crash():
    import io
    import struct

    body = b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(WireError, match="nests deeper"):
        receive(io.BytesIO(struct.pack(">Q", len(body)) + body))


def test_lone_surrogates_come_back_replaced_and_other_text_intact():
    from course_utils.grading.wire import clean_text

    assert roundtrip(["a\ud800b", {"k\udfff": "\U0001f600 ✓"}]) == ["a\ufffdb", {"k\ufffd": "\U0001f600 ✓"}]
    assert clean_text("plain") == "plain" and clean_text("\udcff") == "\ufffd"


def test_a_checks_test_object_crosses_to_the_worker_but_never_comes_back_from_it():
    """The grader sends a2's test function (and a NumPy generator) to the student's code as data; the
    student's answers are read as plain data only."""
    import numpy as np

    from course_utils.checks.a2_backprop_init import Objective
    from course_utils.grading.wire import WireError, decode, encode

    assert decode(encode(np.random.default_rng(3))).random() == np.random.default_rng(3).random()
    f = Objective(c=np.array([1.0, 2.0]), a=np.array([0.5, -1.0]))
    rebuilt = decode(encode([f]), objects=True)[0]
    assert type(rebuilt) is Objective and rebuilt(np.array([1.0, 1.0])) == f(np.array([1.0, 1.0]))
    with pytest.raises(WireError, match="plain data"):
        decode(encode([f]))


def test_a_driver_of_any_checks_module_crosses_without_being_registered():
    """a3's drivers (``checks.drive``): any top-level class of a course_utils.checks module with ``__wire__``."""
    import drive_probe

    probe = drive_probe.install()
    scenario = probe.scenario()
    item = encode(scenario)
    assert item["t"] == "object" and item["class"] == "course_utils.checks._drive_probe:Steps"
    rebuilt = decode(json.loads(json.dumps(item)), objects=True)
    assert type(rebuilt) is probe.Steps and torch.equal(rebuilt.start, scenario.start) and rebuilt.lr == 0.1
    with pytest.raises(WireError, match="plain data"):  # the grader never rebuilds one from the student's answer
        decode(item)
    with pytest.raises(WireError, match="cannot send a value of type NoWire"):
        encode(probe.NoWire())


class _Outside:
    def __wire__(self):
        return {}


@pytest.mark.parametrize("tag", ["os:system", "course_utils.grading.session:Worker", "course_utils.checks.guard:Guard",
                                 "course_utils.checks._drive_probe:NoWire", "course_utils.checks._drive_probe:torch",
                                 "course_utils.checks._drive_probe:Steps.__init__", "course_utils.checks..x:Steps",
                                 "tests.test_wire:_Outside", "a2_backprop_init.Nothing"])
def test_a_test_object_of_any_other_class_is_refused(tag):
    import drive_probe

    drive_probe.install()
    with pytest.raises(WireError, match="unknown test object class"):
        decode({"t": "object", "class": tag, "v": encode({})}, objects=True)
    with pytest.raises(WireError, match="cannot send a value of type _Outside"):
        encode(_Outside())


def test_the_worker_rebuilds_test_objects_only_from_the_classes_it_pinned():
    """``classes`` (the worker's, pinned before any student code): a tag outside it is refused even if it could be
    imported now, and a pinned tag is rebuilt with the pinned class, not with what its module holds today."""
    import drive_probe

    probe = drive_probe.install()
    item = json.loads(json.dumps(encode(probe.scenario())))

    class Pinned(probe.Steps):
        pass

    assert type(decode(item, objects=True, classes={item["class"]: Pinned})) is Pinned
    with pytest.raises(WireError, match="unknown test object class"):
        decode(item, objects=True, classes={})


def test_the_checks_modules_a_worker_pins_are_named_in_its_environment():
    from course_utils.grading.wire import checks_modules

    assert checks_modules("") == {}
    assert checks_modules("course_utils.checks.a3_optim_batchnorm, course_utils.checks._p=/tmp/p.py") == {
        "course_utils.checks.a3_optim_batchnorm": None, "course_utils.checks._p": "/tmp/p.py"}
    with pytest.raises(ValueError, match="'os' is not a module of course_utils.checks"):
        checks_modules("os")
