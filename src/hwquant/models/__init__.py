"""Float model zoo for hwquant, written so that ``torch.fx.symbolic_trace`` sees only the layers a
quantizer rewrites: bias-free ``Conv2d`` + ``BatchNorm2d``, ``ReLU``/``ReLU6`` modules (one instance
per use), ``Linear``, ``MaxPool2d``, ``AdaptiveAvgPool2d(1)``, ``torch.flatten`` and residual adds.

Use :func:`build` with one of :data:`MODEL_NAMES`, or instantiate a class directly.
"""

from hwquant.models.mobilenet import InvertedResidual, MobileNetV2
from hwquant.models.plain import PlainConvNet
from hwquant.models.registry import MODEL_NAMES, build
from hwquant.models.resnet import BasicBlock, ResNet, ResNet18, ResNet20
from hwquant.models.small_cnn import SmallCNN
from hwquant.models.vgg import VGGSmall

__all__ = [
    "MODEL_NAMES",
    "BasicBlock",
    "InvertedResidual",
    "MobileNetV2",
    "PlainConvNet",
    "ResNet",
    "ResNet18",
    "ResNet20",
    "SmallCNN",
    "VGGSmall",
    "build",
]
