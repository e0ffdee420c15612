"""What the BN freeze does to a QAT run's gradients, step by step (issue 19's collapses).

Several CIFAR-10 QAT runs fall to chance at the step their folded BN statistics freeze
(``recipe.bn_freeze_step``): the `llsq_W4A4` probe from least-error scales, the probe at lr
0.02, and 2-bit-weight and 8-bit-activation rows frozen early (docs/results.md). Before the
freeze each layer's output is batch-normalized,

    y = γ·(z − μ_B)/σ_B + β,        z = conv(x, Q(s·W))/s,

which makes the loss invariant to the scale and mean of ``z``, so the gradient has no
component along them; after it, ``y = conv(x, Q(s·W)) + b'`` with fixed ``s``, ``b'``, and
those directions carry curvature. This benchmark trains a probe (:mod:`benchmarks
.cifar10_qat_probes`: the same subset, schedule and FP32 start) to ``--before`` steps ahead of
its freeze, and from that one state (a deep copy of the model, the optimizer's and schedule's
state, the random generators; each branch's steps before the freeze must equal those of the
unbranched run, or the run fails)
continues through the freeze under each learning-rate factor ρ of
``TrainConfig.bn_freeze_lr_factor`` (1: the run as it is), recording every step's loss, its
batch accuracy, the learning rate, whether BN was frozen, and the gradient norm of every weight
layer. It uses the trainer's own optimizer and schedule
(:func:`hwquant.app.train.build_optimizer`, :func:`build_scheduler`) and the trainer's step
(cross-entropy, no autocast: float32 only), in a loop of its own, because the trainer does not
report per-step gradients::

    python -m benchmarks.bn_freeze_sharpness --variant llsq_W4A4,scale_init=min_error \\
        --factors 1 0.5 0.25
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.cifar10_qat_probes import (
    WEIGHT_DECAY,
    parse_variant,
    prepared_fp32,
    probe_train_loader,
)
from benchmarks.common import RESULTS_DIR, command_line, write_result
from hwquant.app.bench.tiers import CPU_FULL
from hwquant.app.config import TrainConfig
from hwquant.app.train import (
    build_optimizer,
    build_scheduler,
    capture_rng_state,
    restore_rng_state,
    seed_everything,
)
from hwquant.core.errors import ConfigError
from hwquant.data import load_dataset
from hwquant.qat.nn import QuantWeightLayer
from hwquant.qat.prepare import bn_frozen

NAME = "bn_freeze_sharpness"
PASSES = 3
"""The probe's passes over its subset (its ``--evals``): the run is ``steps`` long."""


def weight_layers(model: torch.nn.Module) -> dict[str, QuantWeightLayer]:
    """Every layer with weights, by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantWeightLayer)}


def train_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    trace: bool,
) -> list[dict[str, Any]]:
    """The trainer's step (:meth:`hwquant.app.train.Trainer._step`, float32, no clipping) on
    each batch; with ``trace``, each step's record."""
    layers = weight_layers(model)
    records = []
    for x, y in batches:
        frozen, lr = bn_frozen(model), optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        if trace:
            norms = {
                name: float(layer.weight.grad.norm())
                for name, layer in layers.items()
                if layer.weight.grad is not None
            }
            records.append({
                "loss": float(loss.detach()),
                "batch_acc": float((logits.argmax(1) == y).float().mean()),
                "lr": lr,
                "bn_frozen": frozen,
                "weight_grad_norm": norms,
            })  # fmt: skip
        optimizer.step()
        scheduler.step()
    return records


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train to the branch point, then trace each factor from it."""
    row, recipe = parse_variant(args.variant, args.steps)
    freeze = recipe.bn_freeze_step
    if freeze is None or not args.before <= freeze or freeze + args.after > args.steps:
        raise ConfigError(
            f"{args.variant!r} freezes BN at step {freeze}: the trace needs --before "
            f"({args.before}) steps before it and --after ({args.after}) after it within "
            f"--steps ({args.steps}). Fix: choose a variant with a BN freeze, or fewer steps."
        )
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    data = load_dataset("cifar10-folder", args.data_root, progress=False)
    per_pass = args.steps // PASSES
    train = probe_train_loader(data, per_pass, args.batch, args.seed,
                               np.random.default_rng(args.seed))  # fmt: skip
    model = prepared_fp32(recipe, args.seed).to(memory_format=torch.channels_last).train()

    def config(factor: float) -> TrainConfig:
        return TrainConfig(
            epochs=PASSES, batch_size=args.batch, optimizer="sgd", lr=args.lr,
            weight_decay=WEIGHT_DECAY, schedule="cosine", amp=False,
            bn_freeze_lr_factor=factor, seed=args.seed, deterministic=True,
        )  # fmt: skip

    def batches(first: int, last: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Global steps ``first`` to ``last`` (exclusive) of the probe's batch order."""
        for step in range(first, last):
            epoch, within = divmod(step, per_pass)
            train.set_epoch(epoch)
            yield next(train.iter_from(within))

    seed_everything(args.seed)
    branch = freeze - args.before
    optimizer = build_optimizer(model, config(1.0))
    scheduler = build_scheduler(optimizer, config(1.0), per_pass, lambda: bn_frozen(model))
    train_steps(model, optimizer, scheduler, batches(0, branch), trace=False)
    traced = list(batches(branch, freeze + args.after))
    state = copy.deepcopy((model, optimizer.state_dict(), scheduler.state_dict()))
    rng = capture_rng_state()  # LLSQ's scale rule samples activations with torch's generator
    # the unbranched run's steps up to the freeze: every branch must repeat them exactly
    reference = train_steps(model, optimizer, scheduler, traced[: args.before], trace=True)
    traces = {}
    for factor in args.factors:
        # every branch gets copies: load_state_dict keeps the tensors it is given, and SGD
        # updates its momentum buffers in place
        branch_model, optimizer_state, scheduler_state = copy.deepcopy(state)
        optimizer = build_optimizer(branch_model, config(factor))
        scheduler = build_scheduler(optimizer, config(factor), per_pass,
                                    lambda m=branch_model: bn_frozen(m))  # fmt: skip
        optimizer.load_state_dict(optimizer_state)  # after the schedule, as the trainer resumes
        scheduler.load_state_dict(scheduler_state)
        restore_rng_state(rng)
        records = train_steps(branch_model, optimizer, scheduler, traced, trace=True)
        if records[: args.before] != reference:
            raise RuntimeError(
                f"the trace of factor {factor:g} differs from the unbranched run before the "
                "freeze, where the factor does not act: the branch did not start from the "
                "run's state"
            )
        for step, record in zip(range(branch, freeze + args.after), records, strict=True):
            record["step"] = step
        traces[f"{factor:g}"] = records
        last = records[-1]
        print(f"rho {factor:g}: loss {records[0]['loss']:.4f} at step {branch} -> "
              f"{last['loss']:.4f} at step {last['step']}", flush=True)  # fmt: skip
    return {
        "variant": args.variant,
        "row": row.name,
        "recipe": recipe.to_dict(),
        "bn_freeze_step": freeze,
        "branch_step": branch,
        "lr": args.lr,
        "traces": traces,
        "summary": {
            factor: {
                "loss_before_freeze": records[args.before - 1]["loss"],
                "loss_last": records[-1]["loss"],
                "max_loss_after_freeze": max(r["loss"] for r in records[args.before :]),
                "grad_norm_growth": max(
                    max(r["weight_grad_norm"].values()) for r in records[args.before :]
                )
                / max(max(r["weight_grad_norm"].values()) for r in records[: args.before]),
            }
            for factor, records in traces.items()
        },
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="llsq_W4A4,scale_init=min_error",
                        help="a probe variant (benchmarks.cifar10_qat_probes)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=585, help="the run's length (its recipe)")
    parser.add_argument("--lr", type=float, default=CPU_FULL.qat_lr)
    parser.add_argument("--before", type=int, default=6, help="steps traced before the freeze")
    parser.add_argument("--after", type=int, default=14, help="steps traced from the freeze on")
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--batch", type=int, default=CPU_FULL.batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / f"{NAME}.json")
    args = parser.parse_args(argv)
    if args.before < 1 or args.after < 1:
        parser.error("--before and --after: use at least 1 step each")
    for factor in args.factors:
        TrainConfig(bn_freeze_lr_factor=factor)  # refuse a bad factor before any work
    results = run(args)
    config = {k: v for k, v in vars(args).items() if k not in ("out", "data_root")}
    path = write_result(NAME, path=args.out, command=command_line(), seed=args.seed,
                        config=config | {"passes": PASSES}, results=results)  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
