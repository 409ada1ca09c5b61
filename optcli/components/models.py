"""The model registry: small networks built from the data's shape."""

from __future__ import annotations

import itertools

from torch import nn

from optcli.components.gpt import GPT
from optcli.components.registry import Registry
from optcli.errors import ConfigError
from optcli.name_matching import unknown_name_message

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def mlp(
    in_features: int,
    out_features: int,
    hidden: list[int] | None = None,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """Linear layers with an activation between them; `hidden: [128]` is the guide's SimpleNN.

    Layers are created in order, so from the same seed the weights equal those of a hand-written
    `Linear(784, 128)`, `ReLU`, `Linear(128, 10)` network.
    """
    hidden = [128] if hidden is None else hidden
    if in_features < 1 or out_features < 1 or any(width < 1 for width in hidden):
        raise ConfigError("hidden: in_features, out_features and every hidden width must be at least 1")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout: must be in [0, 1), got {dropout}")
    if activation not in ACTIVATIONS:
        raise ConfigError("activation: " + unknown_name_message("activation", activation, ACTIVATIONS))
    layers: list[nn.Module] = [nn.Flatten()]  # images and other shaped inputs become vectors
    widths = [in_features, *hidden]
    for width_in, width_out in itertools.pairwise(widths):
        layers += [nn.Linear(width_in, width_out), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-1], out_features))
    return nn.Sequential(*layers)


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Sequential:
    """One linear layer: logistic or linear regression."""
    if in_features < 1 or out_features < 1:
        raise ConfigError("in_features: in_features and out_features must be at least 1")
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features, bias=bias))


def cnn(
    input_shape: list[int],
    out_features: int,
    channels: list[int] | None = None,
    kernel_size: int = 3,
    hidden: int = 64,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """A small convolutional network for images (channels × height × width, from the data).

    Each entry of `channels` is a 3×3 (`kernel_size`) convolution keeping the size, an activation,
    and a 2×2 max-pool while the image is at least 2 pixels wide; then one hidden linear layer.
    """
    channels = [16, 32] if channels is None else channels
    if len(input_shape) != 3:
        raise ConfigError(
            f"input_shape: cnn needs images (channels × height × width), but the data's samples have shape "
            f"{list(input_shape)}; use mlp for tabular data"
        )
    if not channels or any(width < 1 for width in channels) or hidden < 1 or out_features < 1:
        raise ConfigError(
            "channels: give one or more channel counts of at least 1; hidden must be at least 1"
        )
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"kernel_size: must be odd (the image keeps its size), got {kernel_size}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout: must be in [0, 1), got {dropout}")
    if activation not in ACTIVATIONS:
        raise ConfigError("activation: " + unknown_name_message("activation", activation, ACTIVATIONS))
    in_channels, height, width = input_shape
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            ACTIVATIONS[activation](),
        ]
        if min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        in_channels = out_channels
    layers += [nn.Flatten(), nn.Linear(in_channels * height * width, hidden), ACTIVATIONS[activation]()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, out_features))
    return nn.Sequential(*layers)


MODELS = Registry("model")
MODELS.add("mlp", mlp, summary="multi-layer perceptron")
MODELS.add("linear", linear, summary="a single linear layer")
MODELS.add("cnn", cnn, summary="a small convolutional network for images")
MODELS.add("gpt", GPT, summary="a decoder-only transformer language model (nanoGPT-style) for text data")

# Sizes the data decides: filled in when a model takes them and the config leaves them out.
SIZE_ARGUMENTS = ("in_features", "out_features", "input_shape", "vocab_size", "block_size")
