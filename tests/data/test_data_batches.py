"""Tests of BatchLoader: batch layout, normalisation, augmentation and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwquant.core.errors import ConfigError
from hwquant.data import ArrayDataset, BatchLoader
from hwquant.data.batches import crop_padding

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def make_data(n: int = 10, side: int = 8, channels: int = 3) -> ArrayDataset:
    """Random images; label i marks image i, so a batch tells which images it holds."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, side, side, channels), dtype=np.uint8)
    return ArrayDataset(images, np.arange(n, dtype=np.int64))


def collect(loader: BatchLoader, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.iter_from(start))


def test_batches_are_normalised_nchw_float() -> None:
    data = make_data()
    loader = BatchLoader(data, 4, mean=MEAN, std=STD, shuffle=False, augment=False)
    batches = collect(loader)
    assert len(loader) == 3 == len(batches)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert images.shape == (10, 3, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == list(range(10))
    expected = (torch.from_numpy(data.images).permute(0, 3, 1, 2) / 255.0).numpy()
    expected = (expected - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]
    np.testing.assert_allclose(images.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_drop_last() -> None:
    loader = BatchLoader(
        make_data(), 4, mean=MEAN, std=STD, shuffle=True, augment=False, drop_last=True
    )
    batches = collect(loader)
    assert len(loader) == 2 == len(batches)
    labels = torch.cat([y for _, y in batches])
    assert all(len(y) == 4 for _, y in batches) and len(set(labels.tolist())) == 8


def test_permutation_follows_the_contract_and_changes_with_epoch() -> None:
    loader = BatchLoader(make_data(), 3, mean=MEAN, std=STD, shuffle=True, augment=False, seed=7)
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        order = torch.cat([y for _, y in loader])
        generator = torch.Generator().manual_seed(7 * 1_000_003 + epoch)
        assert torch.equal(order, torch.randperm(10, generator=generator))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1])
    assert torch.equal(orders[0], orders[2])


@pytest.mark.parametrize("channels", [1, 3])
def test_iter_from_equals_the_tail_of_a_full_pass(channels: int) -> None:
    data = make_data(n=11, channels=channels)
    mean, std = MEAN[:channels], STD[:channels]
    loader = BatchLoader(data, 3, mean=mean, std=std, shuffle=True, augment=True, seed=3)
    loader.set_epoch(2)
    full = collect(loader)
    for start in range(len(loader) + 1):
        tail = collect(loader, start)
        assert len(tail) == len(full) - start
        for (x, y), (x_ref, y_ref) in zip(tail, full[start:], strict=True):
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


def _placements(source: torch.Tensor, crop: torch.Tensor, pad: int) -> set[tuple[int, int, bool]]:
    """Every (row offset, column offset, mirrored) that turns ``source`` into ``crop``."""
    _, height, width = source.shape
    padded = F.pad(source, (pad, pad, pad, pad))
    found = set()
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            window = padded[:, dy : dy + height, dx : dx + width]
            for mirrored in (False, True):
                if torch.equal(window.flip(2) if mirrored else window, crop):
                    found.add((dy, dx, mirrored))
    return found


@pytest.mark.parametrize(("channels", "side"), [(3, 8), (1, 28)])
def test_augmentation_is_a_padded_crop_and_colour_only_flip(channels: int, side: int) -> None:
    data = make_data(n=24, side=side, channels=channels)
    zero, one = (0.0,) * channels, (1.0,) * channels
    loader = BatchLoader(data, 8, mean=zero, std=one, shuffle=True, augment=True, seed=5)
    source = torch.from_numpy(data.images).permute(0, 3, 1, 2)
    placements = []
    for x, y in loader:
        assert x.shape == (len(y), channels, side, side)
        pixels = torch.round(x * 255).to(torch.uint8)
        for crop, label in zip(pixels, y, strict=True):
            found = _placements(source[label], crop, crop_padding(side))
            assert found, "augmented image is not a shifted/mirrored copy of its source"
            placements.append(found)
    mirrored = [all(m for _, _, m in found) for found in placements]
    if channels == 1:
        assert not any(mirrored)  # grey-scale (digits) is never mirrored
    else:
        assert any(mirrored) and not all(mirrored)
    assert len({min(found) for found in placements}) > 3  # offsets vary


def test_augmentation_is_deterministic_per_seed() -> None:
    data = make_data()

    def first_batch(seed: int, augment: bool) -> torch.Tensor:
        loader = BatchLoader(
            data, 10, mean=MEAN, std=STD, shuffle=False, augment=augment, seed=seed
        )
        return next(iter(loader))[0]

    assert torch.equal(first_batch(1, True), first_batch(1, True))
    assert not torch.equal(first_batch(1, True), first_batch(2, True))
    assert not torch.equal(first_batch(1, True), first_batch(1, False))


def test_crop_padding_by_image_size() -> None:
    assert [crop_padding(side) for side in (64, 32, 28, 8)] == [4, 4, 2, 1]


def test_invalid_arguments_are_rejected() -> None:
    data = make_data()
    with pytest.raises(ConfigError, match="one value per channel"):
        BatchLoader(data, 4, mean=(0.5,), std=(0.2,), shuffle=False, augment=False)
    with pytest.raises(ConfigError, match="batch_size=0"):
        BatchLoader(data, 0, mean=MEAN, std=STD, shuffle=False, augment=False)
    loader = BatchLoader(data, 4, mean=MEAN, std=STD, shuffle=False, augment=False)
    with pytest.raises(ConfigError, match=r"step=4 is outside 0\.\.3"):
        loader.iter_from(4)


def test_sharding_needs_whole_batches() -> None:
    with pytest.raises(ConfigError, match=r"needs drop_last=True.*Fix: pass drop_last=True"):
        BatchLoader(make_data(), 4, mean=MEAN, std=STD, shuffle=False, augment=False, shard=(0, 2))


def test_cutout_zeroes_one_clipped_square_after_normalisation() -> None:
    """Each image keeps its crop and flip (the draws before Cutout's) and loses exactly one
    c x c square, clipped at the border, to 0 (the mean pixel)."""
    data = make_data(n=16, side=8)
    plain = BatchLoader(data, 16, mean=MEAN, std=STD, shuffle=True, augment=True, seed=2)
    cut = BatchLoader(data, 16, mean=MEAN, std=STD, shuffle=True, augment=True, seed=2, cutout=4)
    (x, y), (xc, yc) = next(plain.iter_from(0)), next(cut.iter_from(0))
    assert torch.equal(y, yc)
    changed = xc != x
    assert torch.equal(xc[changed], torch.zeros_like(xc[changed]))
    masks = (xc == 0).all(dim=1) & (x != 0).any(dim=1)  # [B, H, W]: the square, where visible
    for mask in masks:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        assert int(mask.sum()) == len(rows) * len(cols)
    sides = [int(m.any(1).sum()) for m in masks]
    assert 4 in sides and min(sides) < 4  # whole squares, and squares clipped at the border
    assert torch.equal(torch.cat([b for b, _ in cut.iter_from(0)]),
                       torch.cat([b for b, _ in cut.iter_from(0)]))  # fmt: skip


def test_cutout_needs_augmentation_and_a_side() -> None:
    with pytest.raises(ConfigError, match="augment=False"):
        BatchLoader(make_data(), 4, mean=MEAN, std=STD, shuffle=False, augment=False, cutout=4)
    with pytest.raises(ConfigError, match="cutout=-1"):
        BatchLoader(make_data(), 4, mean=MEAN, std=STD, shuffle=False, augment=True, cutout=-1)
    with pytest.raises(ConfigError, match=r"cutout=9 is wider than the 8-pixel images"):
        BatchLoader(make_data(), 4, mean=MEAN, std=STD, shuffle=False, augment=True, cutout=9)


def test_cutout_shards_as_one_process() -> None:
    """The two shards of a global batch together are the one-process batch, Cutout included."""
    data = make_data(n=16, side=8)
    kwargs = {"mean": MEAN, "std": STD, "shuffle": True, "augment": True, "seed": 4, "cutout": 4}
    whole = next(BatchLoader(data, 8, drop_last=True, **kwargs).iter_from(1))
    shards = [
        next(BatchLoader(data, 8, drop_last=True, shard=(r, 2), **kwargs).iter_from(1))
        for r in (0, 1)
    ]
    assert torch.equal(torch.cat([x for x, _ in shards]), whole[0])
    assert torch.equal(torch.cat([y for _, y in shards]), whole[1])
