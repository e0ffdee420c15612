"""UNIQ's gradual quantization schedule (Baskin et al.; methods.md §1.1 step 4, §7.1 step 4).

The inner layers are split into blocks ``0 .. N−1``. With ``T`` steps per stage, at training step
``t`` a layer of block ``s`` is::

    float      while  t <  s·T
    noisy      while  s·T ≤ t < (s + 1)·T      (noise injection,
    :mod:`hwquant.schemes.nonuniform.noise`) quantized  from   t ≥ (s + 1)·T            (hard
    k-quantile levels)

so stage ``s`` hard-quantizes blocks ``< s``, trains block ``s`` with noise and keeps blocks
``> s`` in float, and from step ``N·T`` on every layer is quantized: the final fine-tune.
"Quantize all at once" is the schedule with one block. Each weight quantizer counts its own
training steps, so the schedule needs no trainer support and resumes exactly from a checkpoint.
"""

from __future__ import annotations

from typing import Literal

from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import NonUniformOptions

Stage = Literal["float", "noisy", "quantized"]


def stage_at(step: int, block: int, steps_per_stage: int) -> Stage:
    """The stage of a layer of block ``block`` at training step ``step``."""
    start = block * steps_per_stage
    if step < start:
        return "float"
    if step < start + steps_per_stage:
        return "noisy"
    return "quantized"


def parse_blocks(text: str) -> list[list[str]]:
    """``"a, b; c"`` → ``[["a", "b"], ["c"]]`` (layer names by ",", blocks by ";")."""
    blocks = [
        [name.strip() for name in part.split(",") if name.strip()] for part in text.split(";")
    ]
    return [block for block in blocks if block]


def schedule_blocks(layers: list[str], options: NonUniformOptions) -> dict[str, int]:
    """The block of every inner layer (``layers`` in graph order) under ``options``.

    Without explicit ``blocks`` the layers are split in order into ``stages`` contiguous blocks
    (at most one per layer; None: one per layer), the first ones a layer shorter when the split
    is uneven.

    Raises:
        ConfigError: explicit blocks name a layer that does not exist, name one twice, or leave
            an inner layer out; the message lists the inner layers.
    """
    if options.schedule == "all_at_once" or not layers:
        return dict.fromkeys(layers, 0)
    if not options.blocks:
        count = min(options.stages or len(layers), len(layers))
        return {name: i * count // len(layers) for i, name in enumerate(layers)}
    blocks = parse_blocks(options.blocks)
    named = [name for block in blocks for name in block]
    unknown = sorted(set(named) - set(layers))
    repeated = sorted({name for name in named if named.count(name) > 1})
    missing = [name for name in layers if name not in named]
    problems = [
        f"{what}: {', '.join(names)}"
        for what, names in (
            ("no such inner layer", unknown),
            ("named twice", repeated),
            ("in no block", missing),
        )
        if names
    ]
    if problems:
        raise ConfigError(
            f"recipe.nonuniform.blocks={options.blocks!r} is not a partition of the inner layers "
            f"({'; '.join(problems)}). Fix: list every inner layer exactly once, blocks "
            f"separated by ';'; the inner layers are: {', '.join(layers)}."
        )
    return {name: b for b, block in enumerate(blocks) for name in block}
