"""A training loop that knows nothing of the model: ``fit`` and ``evaluate``.

A batch is ``(inputs, targets, ...)``; the model maps inputs to outputs and the
loss compares outputs with targets. Accuracy is recorded when the outputs are
class scores: (N, K) with targets (N,), or (N, K, H, W) with targets (N, H, W)
(pixel accuracy). Training runs on :func:`course_utils.device.get_device` with
float16 mixed precision on CUDA, shows a tqdm progress bar (a widget in
JupyterLab, text in a terminal and in the static course website) and can stop
on a time budget.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from tqdm.std import tqdm as text_tqdm

from .device import autocast, get_device, to_device

__all__ = ["History", "fit", "evaluate", "progress"]


@dataclass
class History:
    """What happened in each epoch of :func:`fit`.

    Lists hold one value per completed (or budget-cut) epoch; ``val_*`` are NaN
    without a validation loader, ``*_acc`` NaN when outputs are not class scores.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    device: str = ""
    amp: bool = False
    stopped: str = ""  # why training ended early, "" if it ran every epoch

    def __len__(self) -> int:
        return len(self.epoch)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if not self.epoch:
            return "no epoch completed"
        last = (f"epoch {self.epoch[-1]}: train loss {self.train_loss[-1]:.4f}, "
                f"acc {self.train_acc[-1]:.3f}")
        if not math.isnan(self.val_loss[-1]):
            last += f"; val loss {self.val_loss[-1]:.4f}, acc {self.val_acc[-1]:.3f}"
        total = sum(self.seconds)
        extra = f" ({self.stopped})" if self.stopped else ""
        return f"{last}; {total:.1f} s on {self.device}{' with AMP' if self.amp else ''}{extra}"


def _correct(outputs: Tensor, targets: Tensor) -> Tensor | None:
    """Number of correct class predictions (a tensor on the outputs' device), or None if outputs are not
    class scores. Kept on the device: reading it would make the CPU wait for the GPU at every batch."""
    if (targets.dtype == torch.long and outputs.ndim == targets.ndim + 1
            and outputs.shape[0] == targets.shape[0] and outputs.shape[2:] == targets.shape[1:]):
        return (outputs.argmax(dim=1) == targets).sum()
    return None


# The progress bar shows the running loss; reading it waits for the GPU, so only every this many batches.
_POSTFIX_EVERY = 25


def _split(batch) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(f"a batch must be (inputs, targets, ...), got {type(batch).__name__}")
    return batch[0], batch[1]


def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
             device: torch.device | str | None = None, amp: bool = True) -> dict[str, float]:
    """Average loss and accuracy of ``model`` over ``loader``, in eval mode, without gradients.

    Returns ``{"loss": ..., "accuracy": ..., "n": ...}`` (accuracy NaN when the
    outputs are not class scores).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    total_loss, correct, count, scored = torch.zeros((), device=device), 0, 0, 0
    with torch.no_grad():
        for batch in loader:
            inputs, targets = to_device(_split(batch), device)
            with autocast(device, enabled=amp):
                outputs = model(inputs)
                loss = loss_fn(outputs, targets)
            n = targets.shape[0]
            total_loss += loss.float() * n
            count += n
            hits = _correct(outputs, targets)
            if hits is not None:
                correct += hits
                scored += targets.numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("the loader yielded no batches")
    return {"loss": float(total_loss) / count, "accuracy": float(correct) / scored if scored else math.nan,
            "n": count}


class _FinalLine(text_tqdm):
    """A text bar that prints one line, its final state, when it closes: for a static page
    (``COURSE_STATIC=1``), which can neither show a widget nor redraw a line."""

    def __init__(self, **options) -> None:
        self._buffer = io.StringIO()  # tqdm draws here; only the last state is printed
        super().__init__(file=self._buffer, mininterval=math.inf, ascii=False, **options)  # ascii: block bar

    def close(self) -> None:
        if self.disable:  # closed already (or never shown)
            return
        super().close()
        print(self._buffer.getvalue().rsplit("\r", 1)[-1].strip(), file=sys.stdout, flush=True)


def _progress_bar(**options):
    """tqdm's bar: a widget in JupyterLab, text in a terminal, a final line in a static page."""
    from .widgets.registry import static_mode

    return _FinalLine(**options) if static_mode() else tqdm(**options)


def progress(iterable: Iterable, **options):
    """``iterable`` with a progress bar, as :func:`fit` shows its own: for a loop over several trainings
    (``for run in progress(runs, desc="runs")``). A widget in JupyterLab, text in a terminal, one final
    line on the static course website. ``options`` go to tqdm (``desc``, ``total``, ``unit``, ...)."""
    return _progress_bar(iterable=iterable, **options)


def fit(model: nn.Module, train_loader: Iterable, *, epochs: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None, val_loader: Iterable | None = None,
        device: torch.device | str | None = None, amp: bool = True, scheduler=None,
        scheduler_step: str = "epoch", time_budget: float | None = None, progress: bool = True) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader``; return a :class:`History`.

    optimizer:   defaults to Adam with learning rate ``lr``.
    loss_fn:     defaults to ``nn.CrossEntropyLoss()`` (it takes logits).
    device:      defaults to :func:`get_device`; the model and every batch are moved there.
    amp:         float16 mixed precision with gradient scaling on CUDA (ignored elsewhere).
    scheduler:   an LR scheduler (``torch.optim.lr_scheduler`` or anything with a ``step()``), stepped
                 after every epoch (``scheduler_step="epoch"``, the default: step and exponential
                 decay count epochs) or after every optimizer step (``scheduler_step="batch"``: warm-up
                 and cosine schedules counted in batches, whose length is epochs * batches per epoch).
    time_budget: seconds; training stops after the batch that exceeds it (the one
                 documented source of run-to-run differences, so it is off by default).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if scheduler_step not in ("epoch", "batch"):
        raise ValueError(f'scheduler_step must be "epoch" or "batch", got {scheduler_step!r}')
    if time_budget is not None and not time_budget > 0:
        raise ValueError(f"time_budget must be a positive number of seconds or None, got {time_budget!r}")
    device = torch.device(device) if device is not None else get_device(verbose=False)
    model.to(device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history = History(device=str(device), amp=use_amp)
    try:
        steps = epochs * len(train_loader)
    except TypeError:
        steps = None
    bar = _progress_bar(total=steps, desc="training", unit="batch", disable=not progress, leave=True)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        total_loss, correct, count, scored = torch.zeros((), device=device), 0, 0, 0
        for step, batch in enumerate(train_loader):
            inputs, targets = to_device(_split(batch), device, non_blocking=True)
            with autocast(device, enabled=use_amp):
                outputs = model(inputs)
                loss = loss_fn(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and scheduler_step == "batch":
                scheduler.step()
            n = targets.shape[0]
            total_loss += loss.detach().float() * n
            count += n
            hits = _correct(outputs.detach(), targets)
            if hits is not None:
                correct += hits
                scored += targets.numel()
            bar.update(1)
            if step % _POSTFIX_EVERY == 0:
                bar.set_postfix(epoch=epoch, loss=f"{float(total_loss) / count:.4f}", refresh=False)
            if time_budget is not None and time.perf_counter() - start > time_budget:
                history.stopped = f"time budget of {time_budget:g} s reached in epoch {epoch}"
                break
        if count == 0:
            raise ValueError("the training loader yielded no batches")
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        val = (evaluate(model, val_loader, loss_fn, device, amp=use_amp) if val_loader is not None
               else {"loss": math.nan, "accuracy": math.nan})
        history.epoch.append(epoch)
        history.train_loss.append(float(total_loss) / count)
        history.train_acc.append(float(correct) / scored if scored else math.nan)
        history.val_loss.append(val["loss"])
        history.val_acc.append(val["accuracy"])
        history.seconds.append(time.perf_counter() - epoch_start)
        if history.stopped:
            break
    bar.close()
    return history
