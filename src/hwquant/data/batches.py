"""Mini-batches made on the compute device, reproducible batch by batch.

:class:`BatchLoader` copies a whole :class:`~hwquant.data.arrays.ArrayDataset` to the device
once, as a ``uint8`` NCHW tensor (CIFAR-10's train split is 150 MB), and builds every batch
there with vectorised tensor ops: gather, optional random crop and flip, conversion to
float32 in ``[0, 1]`` and per-channel normalisation. No worker processes, no per-image Python.

Determinism contract, relied on by the trainer for exact mid-epoch resume:

* the order of epoch ``e`` is ``torch.randperm(N, generator=torch.Generator().manual_seed(
  seed * 1_000_003 + e))`` (drawn on the CPU, then moved), or ``0 .. N-1`` without shuffling;
* the augmentation of batch ``i`` of epoch ``e`` draws from a CPU generator seeded from
  ``(seed, e, i)`` alone (mixed by :class:`numpy.random.SeedSequence`).

So ``iter_from(k)`` yields exactly the batches ``k, k+1, ...`` of a full pass, on any device.
With ``shard=(r, W)`` (data-parallel rank ``r`` of ``W``) ``batch_size`` is the global batch and
the loader yields rows ``[r·B/W, (r+1)·B/W)`` of each global batch, augmented exactly as those
rows are in a one-process run; the ``W`` shards of a step together are its global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hwquant.core.errors import ConfigError
from hwquant.data.arrays import PIXEL_MAX, ArrayDataset

EPOCH_SEED_STRIDE = 1_000_003


def crop_padding(height: int) -> int:
    """Zero padding of the random crop: 4 pixels for 32x32 and up, 2 for 28x28, 1 for 8x8."""
    if height >= 32:
        return 4
    if height >= 16:
        return 2
    return 1


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> Tensor:
    """The example order of ``epoch`` (on the CPU), as fixed by the determinism contract."""
    generator = torch.Generator().manual_seed(seed * EPOCH_SEED_STRIDE + epoch)
    return torch.randperm(num_examples, generator=generator)


def batch_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The CPU generator for the augmentation of batch ``step`` of ``epoch``."""
    state = np.random.SeedSequence([seed, epoch, step]).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


class BatchLoader:
    """Iterate over ``(images, labels)`` batches of an :class:`ArrayDataset` on ``device``.

    Images come out as float32 ``[B, C, H, W]`` normalised by ``mean``/``std`` (per channel, in
    ``[0, 1]`` pixel units), labels as int64 ``[B]``. With ``augment``, each image is randomly
    cropped from a zero-padded copy (see :func:`crop_padding`) and, when it has more than one
    channel, mirrored left-right with probability 1/2 (grey-scale sets here are digits, which
    are not mirror-symmetric). With ``cutout`` = c > 0 as well, each augmented image then has
    one c x c square set to 0 after normalisation, i.e. to the data set's mean pixel (Cutout,
    DeVries & Taylor 2017, arXiv:1708.04552 §3: the square's centre is drawn uniformly over the
    whole image, so part of it may fall outside; 16 pixels is their CIFAR-10 size). Its draws
    follow the crop and flip draws of the same batch generator, so a loader without cutout
    gives the same batches as before the option existed.

    Call :meth:`set_epoch` before each pass; iterating twice in one epoch repeats its batches.
    """

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool,
        augment: bool,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
        cutout: int = 0,
    ) -> None:
        """Validate the arguments and move ``data`` to ``device``."""
        channels = data.images.shape[3]
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be at least 1. Fix: pass 1 or more.")
        if seed < 0:
            raise ConfigError(f"seed={seed} must be non-negative. Fix: pass 0 or a positive int.")
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ConfigError(
                f"mean={tuple(mean)} and std={tuple(std)} must give one value per channel "
                f"({channels}), std positive. Fix: pass DataSplits.mean and DataSplits.std."
            )
        if len(data) < batch_size and drop_last:
            raise ConfigError(
                f"{len(data)} examples make no full batch of {batch_size} with drop_last=True. "
                "Fix: lower batch_size or set drop_last=False."
            )
        if isinstance(cutout, bool) or not isinstance(cutout, int) or cutout < 0:
            raise ConfigError(
                f"cutout={cutout!r} is not a square side. Fix: pass 0 (no Cutout) or a positive "
                "number of pixels."
            )
        side = min(data.images.shape[1:3])
        if cutout > side:
            raise ConfigError(
                f"cutout={cutout} is wider than the {side}-pixel images: it would blank them. "
                f"Fix: use a side up to {side} (DeVries & Taylor use 16 on 32x32 CIFAR-10)."
            )
        if cutout and not augment:
            raise ConfigError(
                f"cutout={cutout} is an augmentation, but augment=False. Fix: set augment=True, "
                "or cutout=0."
            )
        rank, world = shard
        if not 0 <= rank < world or batch_size % world:
            raise ConfigError(
                f"shard={shard} must be (rank, world) with 0 <= rank < world and world dividing "
                f"batch_size={batch_size}. Fix: use a global batch that is a multiple of world."
            )
        if world > 1 and not drop_last:
            raise ConfigError(
                f"shard={shard} needs drop_last=True: a last partial batch could leave a rank "
                "without rows while the others wait for it. Fix: pass drop_last=True."
            )
        self.batch_size = batch_size
        self.shard = shard
        self.shuffle = shuffle
        self.augment = augment
        self.cutout = cutout
        self.seed = seed
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.epoch = 0
        images = torch.from_numpy(data.images).to(self.device)
        self._images = images.permute(0, 3, 1, 2).contiguous()
        self._labels = torch.from_numpy(data.labels).to(self.device)
        stats_shape = (1, channels, 1, 1)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(stats_shape)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(stats_shape)
        self._pad = crop_padding(data.images.shape[1])
        self._flip = channels > 1

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self._labels), self.batch_size)
        return full + int(rest > 0 and not self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        if epoch < 0:
            raise ConfigError(f"epoch={epoch} must be non-negative. Fix: count epochs from 0.")
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """All batches of the current epoch."""
        return self.iter_from(0)

    def iter_from(self, step: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``step, step + 1, ...`` of the current epoch, identical to a full pass's."""
        if not 0 <= step <= len(self):
            raise ConfigError(
                f"step={step} is outside 0..{len(self)} for an epoch of {len(self)} batches. "
                "Fix: resume from a step saved with this data set and batch size."
            )
        return self._batches(self.epoch, step)

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Generate the batches of ``epoch`` from ``start`` on."""
        num_examples = len(self._labels)
        if self.shuffle:
            order = epoch_permutation(num_examples, self.seed, epoch).to(self.device)
        else:
            order = torch.arange(num_examples, device=self.device)
        for step in range(start, len(self)):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            rows = self._shard_rows(len(index))
            mine = index[rows]
            images = self._images[mine]
            if self.augment:
                generator = batch_generator(self.seed, epoch, step)
                images = self._crop_and_flip(images, generator, len(index), rows)
            images = images.float().div_(PIXEL_MAX).sub_(self._mean).div_(self._std)
            if self.cutout:
                images = self._cut_out(images, generator, len(index), rows)
            yield images, self._labels[mine]

    def _shard_rows(self, batch: int) -> slice:
        """This rank's rows of a global batch of ``batch`` examples."""
        rank, world = self.shard
        per = -(-batch // world)
        return slice(rank * per, (rank + 1) * per)

    def _crop_and_flip(
        self, images: Tensor, generator: torch.Generator, drawn: int, mine: slice
    ) -> Tensor:
        """Random crop from the zero-padded images and, for colour images, random mirroring.

        The offsets and flips are drawn for all ``drawn`` examples of the global batch; these
        ``images`` are its rows ``mine``.
        """
        batch, channels, height, width = images.shape
        pad = self._pad
        offsets = torch.randint(0, 2 * pad + 1, (2, drawn), generator=generator)[:, mine]
        offsets = offsets.to(self.device)
        rows = offsets[0, :, None] + torch.arange(height, device=self.device)  # [B, H]
        cols = offsets[1, :, None] + torch.arange(width, device=self.device)  # [B, W]
        if self._flip:
            mirror = (torch.rand(drawn, generator=generator)[mine] < 0.5).to(self.device)
            cols = torch.where(mirror[:, None], cols.flip(1), cols)
        padded = F.pad(images, (pad, pad, pad, pad))
        # One gather over flattened planes: several times faster than advanced indexing.
        source = rows[:, :, None] * (width + 2 * pad) + cols[:, None, :]  # [B, H, W]
        source = source.view(batch, 1, height * width).expand(-1, channels, -1)
        return padded.flatten(2).gather(2, source).view(batch, channels, height, width)

    def _cut_out(
        self, images: Tensor, generator: torch.Generator, drawn: int, mine: slice
    ) -> Tensor:
        """Zero one ``cutout`` x ``cutout`` square of each normalised image, its centre
        ``(cy, cx)`` uniform over the pixels: rows ``[cy − ⌊c/2⌋, cy − ⌊c/2⌋ + c)`` and the same
        for columns, clipped to the image (c wide for odd c too, where the authors' code, which
        clips ``[cy − ⌊c/2⌋, cy + ⌊c/2⌋)``, gives c − 1). The centres are drawn for all
        ``drawn`` examples of the global batch; these ``images`` are its rows ``mine``.
        """
        _, _, height, width = images.shape
        centres = torch.stack([
            torch.randint(0, height, (drawn,), generator=generator),
            torch.randint(0, width, (drawn,), generator=generator),
        ])[:, mine].to(self.device)  # fmt: skip
        first = centres - self.cutout // 2
        rows = torch.arange(height, device=self.device)
        cols = torch.arange(width, device=self.device)
        inside_rows = (rows >= first[0, :, None]) & (rows < first[0, :, None] + self.cutout)
        inside_cols = (cols >= first[1, :, None]) & (cols < first[1, :, None] + self.cutout)
        square = inside_rows[:, :, None] & inside_cols[:, None, :]  # [B, H, W]
        return images.masked_fill(square[:, None], 0.0)
