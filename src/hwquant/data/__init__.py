"""Data sets as uint8 arrays, and reproducible on-device mini-batches.

:func:`load_dataset` turns a name (``"cifar10-folder"``, ``"cifar10"``, ``"cifar100"``,
``"mnist"``, ``"fashion-mnist"``, ``"mnist5k"``, ``"digits"``) into :class:`DataSplits`:
train and test :class:`ArrayDataset` splits with class names and per-channel statistics.
:class:`BatchLoader` serves normalised, optionally augmented batches of a split on a device,
batch for batch reproducible so that training can resume mid-epoch exactly.
"""

from hwquant.data.arrays import ArrayDataset, DataSplits
from hwquant.data.batches import BatchLoader
from hwquant.data.registry import load_dataset

__all__ = ["ArrayDataset", "BatchLoader", "DataSplits", "load_dataset"]
