"""The optimisation loop the ``data_tools`` trainers share (``train.py`` for the starters, ``train_denoise.py`` for
the denoisers): a time or step budget, linear warm-up then cosine learning-rate decay
(:func:`data_tools.train.lr_factor`), gradient-norm clipping, a CSV loss log, checkpoints and ``--resume``.

Each trainer builds its model, optimiser, seeded numpy ``Generator`` and a ``step_loss`` closure (draw a batch,
run the model, return the scalar loss); :func:`run` does the rest.  The order of random draws is the trainers'
own, so a recipe gives the same weights as before this loop was shared.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NoReturn

import numpy as np
import torch


@dataclass
class Loop:
    """What :func:`run` needs beyond the model.

    Attributes:
        out: Run folder: ``ckpt.pt`` (model, optimiser, step, elapsed seconds, RNG states) and ``loss.csv``
            (``step,seconds,loss``, the mean loss every ``log_every`` steps).
        lr: Base learning rate (scaled by ``lr_factor`` each step).
        warmup: Linear warm-up steps.
        clip: Gradient-norm clip.
        minutes: Training-time budget (total, across resumes); ignored when ``steps`` is set.
        steps: Fixed number of steps instead of a time budget (deterministic schedules, tests).
        log_every: Steps per log row (a console line every ten rows).
        ckpt_minutes: Minutes between checkpoints (one is always written at the end).
        resume: Continue from ``out/ckpt.pt``.
        task: Recorded in the checkpoint; a resumed checkpoint of another task is refused.
        args: The command line, recorded in the checkpoint.
    """

    out: Path
    lr: float
    warmup: int
    clip: float
    minutes: float
    steps: int | None = None
    log_every: int = 10
    ckpt_minutes: float = 3.0
    resume: bool = False
    task: str | None = None
    args: dict = field(default_factory=dict)


def run(model: torch.nn.Module, opt: torch.optim.Optimizer, rng: np.random.Generator,
        step_loss: Callable[[], torch.Tensor], loop: Loop, error: Callable[[str], NoReturn]) -> tuple[int, float]:
    """Train ``model`` until the budget is spent.

    Args:
        model, opt: The network (left in train mode) and its optimiser.
        rng: The trainer's numpy generator (its state is checkpointed and restored).
        step_loss: One step's scalar loss on a fresh batch (the closure draws from ``rng``).
        loop: Budget, schedule, logging and checkpoint settings.
        error: Called with a one-line message for a bad ``--resume`` (``argparse``'s ``ap.error``: exit 2).

    Returns:
        ``(steps, seconds)`` done in all, resumed runs included.
    """
    from data_tools.train import lr_factor

    loop.out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = loop.out / "ckpt.pt", loop.out / "loss.csv"
    step, elapsed = 0, 0.0
    if loop.resume:
        if not ckpt_path.is_file():
            error(f"--resume: no checkpoint {ckpt_path}")
        ck = torch.load(ckpt_path, weights_only=True)  # tensors, optimiser state and plain-Python RNG state only
        if loop.task is not None and ck.get("task", loop.task) != loop.task:
            error(f"--resume: checkpoint is for task {ck['task']}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = int(ck["step"]), float(ck["elapsed"])
        rng.bit_generator.state = ck["np_rng"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at step {step}, {elapsed:.0f} s elapsed", flush=True)
    else:
        log_path.write_text("step,seconds,loss\n")

    budget = loop.minutes * 60.0

    def save_ckpt() -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                 "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "args": loop.args}
        if loop.task is not None:
            state["task"] = loop.task
        torch.save(state, ckpt_path)

    model.train()
    t0 = time.perf_counter() - elapsed
    last_ckpt = time.perf_counter()
    acc, n_acc = 0.0, 0
    with log_path.open("a", newline="") as logf:
        writer = csv.writer(logf)
        while True:
            elapsed = time.perf_counter() - t0
            if loop.steps is not None:
                if step >= loop.steps:
                    break
                frac = step / loop.steps
            else:
                if elapsed >= budget:
                    break
                frac = elapsed / budget
            for g in opt.param_groups:
                g["lr"] = loop.lr * lr_factor(step, frac, loop.warmup)
            loss = step_loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), loop.clip)
            opt.step()
            step += 1
            acc += float(loss.detach())
            n_acc += 1
            if step % loop.log_every == 0:
                elapsed = time.perf_counter() - t0
                writer.writerow([step, f"{elapsed:.1f}", f"{acc / n_acc:.6f}"])
                logf.flush()
                if step % (loop.log_every * 10) == 0:
                    print(f"step {step} {elapsed:.0f}s loss {acc / n_acc:.5f} lr {opt.param_groups[0]['lr']:.2e}",
                          flush=True)
                acc, n_acc = 0.0, 0
            if time.perf_counter() - last_ckpt > loop.ckpt_minutes * 60:
                elapsed = time.perf_counter() - t0
                save_ckpt()
                last_ckpt = time.perf_counter()
    elapsed = time.perf_counter() - t0
    save_ckpt()
    model.eval()
    return step, elapsed
