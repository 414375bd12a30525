"""How good a class-conditional generator's samples are, judged in the feature space of a
reference classifier trained on real data.

A :class:`ReferenceClassifier` is the dataset's default classifier
(:func:`~flower_synth.models.build_model`) trained once on all real training images;
its penultimate features (``model.features``) define the space. In that space
:func:`generation_quality` compares generated samples with real images:

* the Fréchet distance between Gaussians fitted to the two feature sets (the FID
  recipe, with the dataset's own classifier instead of Inception), over all samples
  and per class (does class ``c``'s generator match class ``c``'s real images?);
* the reference accuracy: the share of samples the classifier assigns to the label
  they were generated for.

The Fréchet distance of a finite sample is biased upwards, the more so the fewer rows
and the more feature dimensions there are; compare values computed from the same
numbers of samples and real images only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import torch
from torch import nn

from flower_synth.data.image_dataset import ImageDataset
from flower_synth.learning.normalization import SYMMETRIC, Normalization
from flower_synth.learning.training import (
    Device,
    extract_features,
    make_loader,
    predict,
    to_unit_range,
    train,
)
from flower_synth.models import build_model

__all__ = [
    "GenerationQuality",
    "ReferenceClassifier",
    "frechet_distance",
    "generation_quality",
]

# Relative tolerance for images "in [0, 1]" (float rounding of generators' outputs).
_RANGE_TOLERANCE = 1e-6


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` with the sample means and
    (unbiased) covariances of the rows. The trace of the matrix square root is taken
    from the eigenvalues of the symmetric positive semi-definite matrix
    ``S_a^{1/2} S_b S_a^{1/2}`` (the same eigenvalues as ``S_a S_b``), so no complex
    arithmetic is needed and singular covariances (fewer rows than dimensions) are
    fine; eigenvalues and the result are clipped at 0 against rounding.

    Args:
        a: ``(N_a, D)`` features, one example per row, finite.
        b: ``(N_b, D)`` features, one example per row, finite.

    Returns:
        The distance, a float >= 0 (0 for identical feature sets, up to rounding).

    Raises:
        ValueError: If an input is not 2-D, has fewer than 2 rows or non-finite values,
            or if the two have different numbers of columns.
    """
    a = _check_features("a", a)
    b = _check_features("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature dimensions differ: a has {a.shape[1]} columns, b has {b.shape[1]}"
        )
    mean_gap = a.mean(axis=0) - b.mean(axis=0)
    cov_a, cov_b = _covariance(a), _covariance(b)
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_root = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    distance = float(mean_gap @ mean_gap) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root
    return max(float(distance), 0.0)


def _check_features(name: str, features: np.ndarray) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (examples x features), got shape {features.shape}"
        )
    if features.shape[0] < 2:
        raise ValueError(
            f"{name} needs at least 2 rows to estimate a covariance, got {features.shape[0]}"
        )
    if features.shape[1] < 1:
        raise ValueError(f"{name} has no feature columns")
    if not np.issubdtype(features.dtype, np.number) or np.iscomplexobj(features):
        raise ValueError(f"{name} must hold real numbers, got dtype {features.dtype}")
    features = features.astype(np.float64)
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        raise ValueError(f"{name} has non-finite values (NaN or inf) in {bad} rows")
    return features


def _covariance(features: np.ndarray) -> np.ndarray:
    centred = features - features.mean(axis=0)
    return centred.T @ centred / (len(features) - 1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))
    return (eigenvectors * roots) @ eigenvectors.T


def _check_unit_images(name: str, images: np.ndarray) -> np.ndarray:
    """Float images ``(N, C, H, W)`` in [0, 1], as float32."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"{name} must be float images in [0, 1], got dtype {images.dtype}; convert a "
            "uint8 ImageDataset with flower_synth.learning.training.to_unit_range"
        )
    if images.size:
        if not np.isfinite(images).all():
            raise ValueError(f"{name} has non-finite values (NaN or inf)")
        low, high = float(images.min()), float(images.max())
        if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
            raise ValueError(f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return images.astype(np.float32, copy=False)


def _check_labels(name: str, labels: np.ndarray, count: int, images_name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (count,):
        raise ValueError(
            f"{name} must have shape ({count},), one per image of {images_name}, got {labels.shape}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False)


class ReferenceClassifier:
    """A classifier trained on real images whose penultimate features define the space
    generated samples are compared in.

    Args:
        model: a trained classifier with ``features`` (images to feature vectors) and
            ``head`` (features to logits), as :func:`~flower_synth.models.build_model`
            builds.
        normalization: how images in [0, 1] became the model's inputs in training.
        image_shape: ``(C, H, W)`` the model takes; when given, images of another shape
            are refused with a clear message.
        device: where the model runs.

    Raises:
        ValueError: If ``model`` lacks ``features`` or ``head``.
    """

    def __init__(
        self,
        model: nn.Module,
        normalization: Normalization = SYMMETRIC,
        image_shape: tuple[int, int, int] | None = None,
        device: Device = "cpu",
    ) -> None:
        if not (hasattr(model, "features") and hasattr(model, "head")):
            raise ValueError(
                f"{type(model).__name__} has no `features` and `head`; the reference "
                "classifier needs both (see flower_synth.models.build_model)"
            )
        self.model = model
        self.normalization = normalization
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.device = device

    @classmethod
    def train_on(
        cls,
        dataset: ImageDataset,
        epochs: int = 3,
        seed: int = 0,
        batch_size: int = 64,
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        normalization: Normalization = SYMMETRIC,
        device: Device = "cpu",
    ) -> Self:
        """Train the dataset's default classifier on all of ``dataset``.

        SGD on cross-entropy with :func:`~flower_synth.learning.training.train`, the defaults
        being the app's (batch 64, learning rate 0.01, momentum 0.9). ``seed`` sets the
        initial weights and the shuffling, so a seed gives the same classifier on CPU;
        training runs under a forked torch RNG, so the global one is left as it was.

        Args:
            dataset: the real training images.
            epochs: passes over ``dataset`` (>= 1).
            seed: seed of the initial weights and the shuffling.
            batch_size: examples per SGD step.
            learning_rate: SGD step size.
            momentum: SGD momentum.
            normalization: how images in [0, 1] become the model's inputs.
            device: where to train and later run the model.

        Returns:
            The trained reference classifier.

        Raises:
            ValueError: If ``dataset`` is empty or ``epochs`` < 1.
        """
        if len(dataset) == 0:
            raise ValueError("cannot train a reference classifier on an empty dataset")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        loader = make_loader(
            to_unit_range(dataset),
            dataset.labels,
            batch_size,
            shuffle=True,
            seed=seed,
            normalization=normalization,
        )
        # Forked: building draws the weights and each pass of a DataLoader a base seed
        # from the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(dataset.image_shape, dataset.num_classes)
            train(model, loader, epochs, learning_rate, momentum, seed=seed, device=device)
        model.eval()
        return cls(model, normalization, dataset.image_shape, device)

    @staticmethod
    def cache_file_name(dataset_name: str, num_images: int, epochs: int, seed: int) -> str:
        """The cache file of a reference classifier (what :meth:`load_or_train` reads),
        e.g. ``reference-digits-n1437-e3-s0.pt``."""
        safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_name)
        return f"reference-{safe_name}-n{num_images}-e{epochs}-s{seed}.pt"

    @classmethod
    def load_or_train(
        cls,
        dataset_name: str,
        train_set: ImageDataset,
        cache_dir: str | Path,
        epochs: int = 3,
        seed: int = 0,
        device: Device = "cpu",
    ) -> Self:
        """The reference classifier of ``train_set``, from ``cache_dir`` if it was trained
        before, else trained with :meth:`train_on` (default training options) and saved.

        The cache file (:meth:`cache_file_name`) is named after the dataset, the number
        of training images, ``epochs`` and ``seed``; it holds the model's state dict,
        written to a temporary file and renamed, so an interrupted save leaves no
        partial file behind. A file of another architecture fails to load.

        Args:
            dataset_name: the dataset's name, e.g. ``"digits"``.
            train_set: the real training images (all of them).
            cache_dir: folder of the cache files (created if missing).
            epochs: training epochs.
            seed: training seed.
            device: where to train and run the model.

        Returns:
            The reference classifier, in eval mode.
        """
        directory = Path(cache_dir).expanduser()
        path = directory / cls.cache_file_name(dataset_name, len(train_set), epochs, seed)
        if path.is_file():
            with torch.random.fork_rng(devices=[]):  # the initial weights are replaced
                model = build_model(train_set.image_shape, train_set.num_classes)
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
            model.to(device).eval()
            return cls(model, SYMMETRIC, train_set.image_shape, device)
        reference = cls.train_on(train_set, epochs=epochs, seed=seed, device=device)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        state = {key: value.detach().cpu() for key, value in reference.model.state_dict().items()}
        torch.save(state, temporary)
        os.replace(temporary, path)
        return reference

    def _check_images(self, images: np.ndarray) -> np.ndarray:
        images = _check_unit_images("images", images)
        if self.image_shape is not None and images.shape[1:] != self.image_shape:
            raise ValueError(
                f"images have shape {images.shape[1:]}, the reference classifier takes "
                f"{self.image_shape}"
            )
        return images

    def features(self, images: np.ndarray) -> np.ndarray:
        """Penultimate features of images, batched, in eval mode and without gradients.

        Args:
            images: ``(N, C, H, W)`` floats in [0, 1].

        Returns:
            ``(N, D)`` float32 features.

        Raises:
            ValueError: If ``images`` are not float images in [0, 1] of the model's shape.
        """
        images = self._check_images(images)
        if len(images) == 0:
            return np.zeros((0, self._feature_dim()), np.float32)
        return extract_features(self.model, images, self.normalization, self.device)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted classes of images (``head`` of ``features``), batched, in eval mode
        and without gradients.

        Args:
            images: ``(N, C, H, W)`` floats in [0, 1].

        Returns:
            ``(N,)`` int64 class indices.

        Raises:
            ValueError: If ``images`` are not float images in [0, 1] of the model's shape.
        """
        images = self._check_images(images)
        if len(images) == 0:
            return np.zeros(0, np.int64)
        self.model.to(self.device).eval()
        logits = predict(
            lambda x: self.model.head(self.model.features(x)),
            images,
            self.normalization,
            self.device,
        )
        return logits.argmax(axis=1).astype(np.int64)

    @torch.no_grad()
    def _features_and_predictions(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`features` and :meth:`predict` in one pass."""
        features = self.features(images)
        if len(features) == 0:
            return features, np.zeros(0, np.int64)
        logits = self.model.head(torch.from_numpy(features).to(self.device))
        return features, logits.argmax(dim=1).cpu().numpy().astype(np.int64)

    def _feature_dim(self) -> int:
        dim = getattr(self.model, "feature_dim", None)
        if dim is None:
            dim = getattr(self.model.head, "in_features", 0)
        return int(dim)


@dataclass(frozen=True)
class GenerationQuality:
    """How generated samples compare with real images in a reference feature space.

    Attributes:
        frechet: Fréchet distance between all samples' and all real images' features.
        frechet_per_class: class -> Fréchet distance between the samples generated for
            the class and the real images of the class, for classes with at least 2 of
            each.
        mean_class_frechet: mean of ``frechet_per_class`` (NaN if it is empty).
        reference_accuracy: share of samples the reference classifier assigns to the
            label they were generated for (NaN without samples).
    """

    frechet: float
    frechet_per_class: dict[int, float]
    mean_class_frechet: float
    reference_accuracy: float

    def as_metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat scalar metrics: ``{prefix}frechet``, ``{prefix}mean_class_frechet``,
        ``{prefix}reference_accuracy`` and ``{prefix}frechet_class_{c}`` per class.

        Args:
            prefix: prepended to every key, e.g. ``"generator_"``.

        Returns:
            Metric name -> float value.
        """
        metrics = {
            f"{prefix}frechet": float(self.frechet),
            f"{prefix}mean_class_frechet": float(self.mean_class_frechet),
            f"{prefix}reference_accuracy": float(self.reference_accuracy),
        }
        for label, distance in sorted(self.frechet_per_class.items()):
            metrics[f"{prefix}frechet_class_{label}"] = float(distance)
        return metrics


@dataclass(frozen=True)
class RealFeatures:
    """Real images in a reference classifier's feature space, computed once and
    compared with many sample sets (:func:`generation_quality_against`).

    Attributes:
        features: ``(M, D)`` features of the real images.
        labels: ``(M,)`` their labels.
    """

    features: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(
        cls, reference: ReferenceClassifier, images: np.ndarray, labels: np.ndarray
    ) -> RealFeatures:
        """The features of ``images`` (``(M, C, H, W)`` floats in [0, 1]) under
        ``reference``, with their ``labels``.

        Raises:
            ValueError: If the images are not float images in [0, 1] of the reference's
                shape, the labels do not match them, or there are fewer than 2 images.
        """
        images = _check_unit_images("real_images", images)
        labels = _check_labels("real_labels", labels, len(images), "real_images")
        if len(images) < 2:
            raise ValueError(f"real_images needs at least 2 images, got {len(images)}")
        return cls(reference.features(images), labels)


def generation_quality(
    reference: ReferenceClassifier,
    samples: np.ndarray,
    sample_labels: np.ndarray,
    real_images: np.ndarray,
    real_labels: np.ndarray,
) -> GenerationQuality:
    """Compare generated samples with real images in ``reference``'s feature space.

    Both image sets are float images in [0, 1] (a generator's ``sample`` output; for an
    :class:`~flower_synth.data.image_dataset.ImageDataset` use
    :func:`~flower_synth.learning.training.to_unit_range`). Use the same numbers of samples and
    real images when comparing generators: the Fréchet distance is biased upwards for
    small sets. To compare many sample sets with the same real images, compute
    :class:`RealFeatures` once and call :func:`generation_quality_against`.

    Args:
        reference: the classifier whose features define the space.
        samples: ``(N, C, H, W)`` generated images in [0, 1].
        sample_labels: ``(N,)`` labels the samples were generated for.
        real_images: ``(M, C, H, W)`` real images in [0, 1].
        real_labels: ``(M,)`` their labels.

    Returns:
        The overall and per-class Fréchet distances and the reference accuracy.

    Raises:
        ValueError: If images are not float images in [0, 1] of the reference's shape,
            labels do not match their images, or either set has fewer than 2 images.
    """
    real = RealFeatures.of(reference, real_images, real_labels)
    return generation_quality_against(reference, samples, sample_labels, real)


def generation_quality_against(
    reference: ReferenceClassifier,
    samples: np.ndarray,
    sample_labels: np.ndarray,
    real: RealFeatures,
) -> GenerationQuality:
    """:func:`generation_quality` against real images whose features are computed
    already (``real``, from the same ``reference``).

    Raises:
        ValueError: If the samples are not float images in [0, 1] of the reference's
            shape, their labels do not match them, or there are fewer than 2.
    """
    samples = _check_unit_images("samples", samples)
    sample_labels = _check_labels("sample_labels", sample_labels, len(samples), "samples")
    if len(samples) < 2:
        raise ValueError(f"samples needs at least 2 images, got {len(samples)}")
    sample_features, predictions = reference._features_and_predictions(samples)
    per_class: dict[int, float] = {}
    for label in np.intersect1d(sample_labels, real.labels):
        generated = sample_features[sample_labels == label]
        real_class = real.features[real.labels == label]
        if len(generated) >= 2 and len(real_class) >= 2:
            per_class[int(label)] = frechet_distance(generated, real_class)
    return GenerationQuality(
        frechet=frechet_distance(sample_features, real.features),
        frechet_per_class=per_class,
        mean_class_frechet=float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        reference_accuracy=float((predictions == sample_labels).mean()),
    )
