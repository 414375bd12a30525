"""Any classifier as a feature extractor plus a linear head, for the strategies that
work on features (GMM prototypes, FedProto)."""

from __future__ import annotations

import torch
from torch import nn


class HookedFeatures(nn.Module):
    """A classifier's features: what reaches its last linear layer. Runs the whole
    ``model`` and returns the input of ``head`` (captured by a forward hook), so it works
    for any ``forward``, however it is written."""

    def __init__(self, model: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.model = model
        self.head_layer = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the head for a batch ``x``."""
        captured: list[torch.Tensor] = []
        handle = self.head_layer.register_forward_hook(
            lambda module, inputs, output: captured.append(inputs[0])
        )
        try:
            self.model(x)
        finally:
            handle.remove()
        return captured[-1].flatten(1)


class SplitClassifier(nn.Module):
    """A classifier seen as ``head(features(x))``, with ``feature_dim``.

    A model that has ``features`` and ``head`` modules keeps them; for any other, the
    head is its last ``nn.Linear`` (in registration order) and the features are that
    layer's input (:class:`HookedFeatures`). ``forward`` is the model's own.

    Raises:
        ValueError: the model has no ``nn.Linear`` to serve as its head.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        if isinstance(getattr(model, "features", None), nn.Module) and isinstance(
            getattr(model, "head", None), nn.Module
        ):
            self.features, self.head = model.features, model.head
            self.feature_dim = int(getattr(model, "feature_dim", 0) or self.head.in_features)
            return
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                f"{type(model).__name__} has no nn.Linear layer to use as its head; give a "
                "model whose last layer is linear, or one with `features` and `head` modules"
            )
        self.head = linears[-1]
        self.features = HookedFeatures(model, self.head)
        self.feature_dim = self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits."""
        return self.model(x)


def require_feature_split(model: nn.Module) -> None:
    """``ValueError`` unless ``model`` has ``features`` and ``head`` modules, saying how
    to get them (:class:`SplitClassifier`)."""
    for name in ("features", "head"):
        part = getattr(model, name, None)
        if not isinstance(part, nn.Module):
            found = "no such attribute" if part is None else f"a {type(part).__name__}"
            raise ValueError(
                f"this strategy trains on features: the model needs `{name}` as an nn.Module "
                f"(found {found}); wrap your classifier as SplitClassifier(model) "
                "(flower_synth.models), which splits off its last linear layer"
            )


def check_feature_width(model: nn.Module, images: torch.Tensor) -> None:
    """``ValueError`` unless ``model.features`` turns ``images`` (a batch of model inputs)
    into vectors as wide as ``model.head`` takes, naming the width to build it with; run
    when a learner is built, before a round fails deep in torch with ``mat1 and mat2
    shapes cannot be multiplied``."""
    expected = getattr(model.head, "in_features", None)
    if expected is None:
        return
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            width = int(model.features(images).flatten(1).shape[1])
    finally:
        model.train(training)
    if width != expected:
        raise ValueError(
            f"{type(model).__name__}: its features are {width} wide on your images but its "
            f"head takes {expected}; build it with feature_dim={width} (and give the "
            f"strategy feature_dim={width})"
        )
