import math

import pytest
import torch
from torch import nn

from course_utils import data
from course_utils.seeding import seed_everything
from course_utils.training import History, evaluate, fit


def _model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _loaders():
    splits = data.split(data.load("digits", n=600), (0.8, 0.2, 0.0))
    return data.make_loader(splits.train, 32, shuffle=True), data.make_loader(splits.val, 64)


def test_fit_learns_digits_and_records_history():
    seed_everything(0)
    train, val = _loaders()
    model = _model()
    before = evaluate(model, val, device="cpu")
    history = fit(model, train, val_loader=val, epochs=5, lr=1e-2, device="cpu", progress=False)
    assert isinstance(history, History) and len(history) == 5
    assert history.epoch == [1, 2, 3, 4, 5] and history.device == "cpu" and not history.amp
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_acc[-1] > 0.8 > before["accuracy"]
    assert all(s > 0 for s in history.seconds) and history.stopped == ""
    after = evaluate(model, val)
    assert after["accuracy"] == pytest.approx(history.val_acc[-1])
    assert after["n"] == 120
    assert "epoch 5" in history.summary()


def test_fit_is_repeatable_with_the_same_seed():
    results = []
    for _ in range(2):
        seed_everything(1)
        train, _ = _loaders()
        results.append(fit(_model(), train, epochs=2, device="cpu", progress=False).train_loss)
    assert results[0] == results[1]


def test_time_budget_stops_training_early():
    train, _ = _loaders()
    history = fit(_model(), train, epochs=1000, device="cpu", time_budget=0.05, progress=False)
    assert len(history) < 1000
    assert "time budget of 0.05 s" in history.stopped


def test_evaluate_restores_training_mode_and_handles_non_class_outputs():
    model = _model().train()
    loader = [(torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,)))]
    evaluate(model, loader, device="cpu")
    assert model.training
    regression = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    out = evaluate(regression, [(torch.rand(4, 1, 8, 8), torch.rand(4, 1))], loss_fn=nn.MSELoss())
    assert math.isnan(out["accuracy"]) and out["loss"] > 0


# Two batches of per-pixel predictions and targets (K = 2 classes) whose accuracy is counted by hand:
# batch 1 (1 image of 2x3) gets 4 of 6 pixels right; batch 2 (2 images) gets 1 of 6 and 6 of 6.
_PREDICTED = [torch.tensor([[[0, 1, 1], [1, 0, 0]]]),
              torch.tensor([[[1, 1, 1], [1, 1, 1]], [[0, 0, 0], [0, 0, 0]]])]
_TARGETS = [torch.tensor([[[0, 1, 0], [1, 1, 0]]]),
            torch.tensor([[[1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]])]
PIXEL_ACCURACY = (4 + 1 + 6) / 18  # over all pixels: not the mean of the batches' 4/6 and 7/12 (0.625)


def _segmentation_case():
    """A 1x1 convolution that passes its input through, fed one-hot scores: it predicts _PREDICTED."""
    model = nn.Conv2d(2, 2, kernel_size=1)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        model.bias.zero_()
    scores = [5.0 * nn.functional.one_hot(p, 2).permute(0, 3, 1, 2).float() for p in _PREDICTED]  # (N, 2, H, W)
    return model, list(zip(scores, _TARGETS, strict=True))


def test_pixel_accuracy_counts_every_pixel_of_every_batch():
    model, loader = _segmentation_case()
    out = evaluate(model, loader, device="cpu")
    assert out["accuracy"] == pytest.approx(PIXEL_ACCURACY)
    assert out["n"] == 3  # images, not pixels


def test_fit_records_the_same_pixel_accuracy_while_training():
    model, loader = _segmentation_case()
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # the model does not change during the epoch
    history = fit(model, loader, epochs=1, optimizer=frozen, device="cpu", progress=False)
    assert history.train_acc == [pytest.approx(PIXEL_ACCURACY)]


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"epochs": 1, "time_budget": 0}, "time_budget"),
])
def test_fit_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(_model(), [], progress=False, **kwargs)


def test_bad_batches_and_empty_loaders_are_explained():
    with pytest.raises(ValueError, match=r"a batch must be \(inputs, targets"):
        fit(_model(), [torch.rand(2, 1, 8, 8)], epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="yielded no batches"):
        fit(_model(), [], epochs=1, device="cpu", progress=False)


@pytest.mark.parametrize("scheduler_step, expected_steps", [("epoch", 3), ("batch", 3 * 4)])
def test_the_scheduler_steps_once_per_epoch_or_once_per_batch(scheduler_step, expected_steps):
    loader = [(torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))) for _ in range(4)]
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    # The rate after k scheduler steps is 1 / (k + 1): the last rate tells how often it was stepped.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1 / (k + 1))
    fit(model, loader, epochs=3, optimizer=optimizer, scheduler=scheduler, scheduler_step=scheduler_step,
        device="cpu", progress=False)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1 / (expected_steps + 1))


def test_fit_rejects_an_unknown_scheduler_step():
    with pytest.raises(ValueError, match='scheduler_step must be "epoch" or "batch"'):
        fit(_model(), [], epochs=1, scheduler_step="step", device="cpu", progress=False)


def test_progress_is_a_widget_bar_live_and_one_final_line_on_a_static_page(monkeypatch, capsys):
    from tqdm.auto import tqdm as auto_tqdm

    from course_utils.training import progress
    from course_utils.widgets.registry import STATIC_ENV

    monkeypatch.delenv(STATIC_ENV, raising=False)
    live = progress([1, 2, 3], desc="runs")
    assert isinstance(live, auto_tqdm) and list(live) == [1, 2, 3]
    monkeypatch.setenv(STATIC_ENV, "1")
    still = progress(range(4), desc="runs")
    assert list(still) == [0, 1, 2, 3]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("runs") and "4/4" in lines[0]
