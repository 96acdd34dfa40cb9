"""The shared numerical gradient checker (course_utils.checks.gradients): exact where it can be, honest errors."""
import numpy as np
import pytest
import torch

from course_utils.checks.gradients import gradient_errors, numerical_gradient, numerical_vjp, relative_error


def _cubic(x):
    return (x ** 3).sum() + 0.5 * (x.sum()) ** 2


def _cubic_gradient(x):
    return 3 * x ** 2 + x.sum()


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_central_differences_match_the_exact_gradient_and_leave_x_alone(kind):
    g = np.random.default_rng(0)
    x = g.uniform(0.5, 1.5, size=(3, 4))
    x = torch.tensor(x, dtype=torch.float32) if kind == "torch" else x
    before = x.clone() if kind == "torch" else x.copy()
    got = numerical_gradient(lambda v: float(_cubic(v)), x)
    exact = _cubic_gradient(np.asarray(x, dtype=np.float64))
    assert type(got) is type(before) and tuple(got.shape) == (3, 4)
    # The central difference of x^3 is off by exactly h^2 per entry (1e-12); rounding in f (about 100)
    # adds about 1e-16 * 100 / h = 1e-8 to entries of about 15.
    assert relative_error(got, exact) < 1e-8
    assert (x == before).all()


def test_a_forward_difference_would_not_pass_where_a_central_one_does():
    x = np.linspace(0.5, 1.5, 6)
    h = 1e-4
    forward = np.array([(_cubic(x + h * e) - _cubic(x)) / h for e in np.eye(6)])
    exact = _cubic_gradient(x)
    assert relative_error(forward, exact) > 1e-5
    assert relative_error(numerical_gradient(_cubic, x, h), exact) < 1e-8


def test_a_non_contiguous_tensor_is_perturbed_entry_by_entry():
    x = torch.arange(12, dtype=torch.float64).reshape(3, 4).t() / 10   # a transposed view
    got = numerical_gradient(lambda v: float((v * torch.arange(12.0).reshape(4, 3)).sum()), x)
    assert torch.allclose(got, torch.arange(12.0, dtype=torch.float64).reshape(4, 3), atol=1e-8)


def test_the_vjp_of_a_linear_layer_is_w_transposed_times_dout():
    g = torch.Generator().manual_seed(1)
    w, x, dout = torch.randn(3, 5, generator=g), torch.randn(2, 5, generator=g), torch.randn(2, 3, generator=g)
    got = numerical_vjp(lambda v: v @ w.double().T, x, dout)
    assert torch.allclose(got, dout.double() @ w.double(), atol=1e-8)


def test_relative_error_takes_the_worst_entry_and_never_divides_by_zero():
    a = np.array([1.0, 2.0, 0.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(a, np.array([1.0, 2.0, 1e-9])) == pytest.approx(1e-9 / 1e-8)
    assert relative_error(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one shape"):
        relative_error(np.zeros(2), np.zeros(3))


def test_gradient_errors_pass_a_right_backward_and_fail_a_transposed_weight_gradient():
    g = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(4, 3, generator=g), torch.randn(2, 3, generator=g), torch.randn(2, generator=g)
    dout = torch.randn(4, 2, generator=g)

    def layer(x, w, b):
        return x @ w.T + b

    right = {"x": dout @ w, "w": dout.T @ x, "b": dout.sum(0)}
    errors = gradient_errors(layer, {"x": x, "w": w, "b": b}, right, dout=dout)
    assert set(errors) == {"x", "w", "b"} and max(errors.values()) < 1e-6  # float32 analytic gradients
    square, dout3 = torch.randn(3, 3, generator=g), torch.randn(4, 3, generator=g)
    inputs = {"x": x, "w": square, "b": torch.zeros(3)}
    assert gradient_errors(layer, inputs, {"w": dout3.T @ x}, dout=dout3)["w"] < 1e-6
    wrong = gradient_errors(layer, inputs, {"w": x.T @ dout3}, dout=dout3)  # transposed: same shape, wrong values
    assert wrong["w"] > 0.1


def test_bad_arguments_are_explained():
    x = np.ones(3)
    with pytest.raises(ValueError, match="step h"):
        numerical_gradient(lambda v: 0.0, x, h=0)
    with pytest.raises(ValueError, match="single number"):
        numerical_gradient(lambda v: v, x)
    with pytest.raises(TypeError, match="real numbers"):
        numerical_gradient(lambda v: 0.0, "abc")
    with pytest.raises(KeyError, match="not among the inputs"):
        gradient_errors(lambda x: 0.0, {"x": x}, {"y": x})
    with pytest.raises(ValueError, match="shape"):
        gradient_errors(lambda x: float(x.sum()), {"x": x}, {"x": np.ones(4)})
