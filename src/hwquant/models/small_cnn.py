"""A small conv-BN-ReLU network for MNIST-sized (28x28) and sklearn-digits-sized (8x8) images,
built on :class:`~hwquant.models.plain.PlainConvNet` (VGG-style, Simonyan & Zisserman, ICLR 2015)
and kept small enough to train in a few CPU minutes. The variant is chosen by ``input_size``:

* ``input_size >= 16`` (e.g. 28x28 MNIST / Fashion-MNIST): conv 32, conv 32, max pool, conv 64,
  max pool, flatten (64 x 7 x 7 for 28x28), linear.
* ``input_size < 16`` (e.g. 8x8 digits): conv 32, conv 64, max pool, flatten (64 x 4 x 4), linear.

All convs are 3x3 with padding 1 and followed by BN and ReLU.
"""

from __future__ import annotations

from hwquant.models.plain import PlainConvNet

#: Inputs at least this large get the three-conv, two-pool variant.
LARGE_INPUT_SIZE = 16
_LARGE_LAYOUT = ((32, False), (32, True), (64, True))
_TINY_LAYOUT = ((32, False), (64, True))


class SmallCNN(PlainConvNet):
    """Small CNN for 28x28 or 8x8 inputs; see the module docstring for the two variants."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        width: float = 1.0,
    ) -> None:
        super().__init__(
            _LARGE_LAYOUT if input_size >= LARGE_INPUT_SIZE else _TINY_LAYOUT,
            "small_cnn",
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            width=width,
        )
