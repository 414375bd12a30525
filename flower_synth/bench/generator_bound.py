"""How good can a classifier trained only on synthetic samples get?

The synthetic-sample strategy's global model learns from generated data alone, so the
generator's quality bounds it. This experiment removes federation from the picture:
one generator is fitted on the whole training set, a classifier is trained on its
samples only, and both are scored on the real test set (classification accuracy
score, CAS): once with the samples' hard labels, once with soft labels, the class
probabilities of a teacher trained on the real training set (as a generating client's
classifier labels its samples in the federation). The samples' Fréchet distance to
the test set is taken in the reference classifier's features
(:mod:`flower_synth.app.quality`); that classifier is also the teacher. Optionally the
samples are filtered first: a judge, the dataset's classifier trained on the generator's
training images with another seed, refuses those it reads as another class, and they
are drawn again (:mod:`flower_synth.bench.consistent_samples`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flower_synth.app.quality import ReferenceClassifier, generation_quality
from flower_synth.bench.bound_checkpoint import load_fit, save_fit
from flower_synth.bench.consistent_samples import draw_consistent
from flower_synth.data import load_dataset
from flower_synth.generative import (
    DP_GENERATORS,
    IMAGE_GENERATORS,
    ODEImageModel,
    build_generator,
)
from flower_synth.learning.training import (
    class_probabilities,
    evaluate,
    make_loader,
    to_unit_range,
    train,
)
from flower_synth.models import build_model
from flower_synth.privacy import DPSGD, noise_for_budget

REFERENCE_CACHE = "~/.cache/flower-synth/reference"
REAL_IMAGES = "real"  # not a generator: real training images of the same count, the ceiling
STEPS_PER_EPOCH = 100  # the mean-embedding's Adam steps per generator epoch
DP_DELTA = 1e-5  # with dp_epsilon
DEFAULT_BATCH = 256  # a DP-SGD generator's batch unless given (the app's default)
# Torch generators fitted in epochs (the mean-embedding takes Adam steps): a second fit
# goes on from where the first stopped.
EPOCH_GENERATORS = tuple(name for name in IMAGE_GENERATORS if name != "mean-embedding")
BOUND_COLUMNS = (
    "generator",
    "epochs",
    "steps",
    "guidance",
    "acceptance",
    "cas_hard",
    "cas_soft",
    "frechet",
    "parameters",
    "fit_seconds",
    "seconds_per_1000",
)


def generator_bound(
    dataset: str = "fashion-mnist",
    generator: str = "cvae",
    generator_epochs: int | Sequence[int] = 10,
    num_samples: int = 20_000,
    classifier_epochs: int = 5,
    seed: int = 0,
    sample_steps: Sequence[int] = (),
    sample_guidance: Sequence[float] = (),
    reference_cache: str = REFERENCE_CACHE,
    train_per_class: int = 0,
    dp_epsilon: float = 0.0,
    on_row: Callable[[dict[str, float]], None] | None = None,
    checkpoint: str | Path | None = None,
    filter_samples: bool = False,
    **generator_params: Any,
) -> list[dict[str, float]]:
    """Fit ``generator`` centrally on the whole training set, or on ``train_per_class``
    images of every class drawn by ``seed`` (a client-sized set), once
    (``generator_epochs`` epochs for the torch image generators; as many times
    :data:`STEPS_PER_EPOCH` steps for the mean-embedding), or, for a torch generator
    given several epoch counts, on and on, scored whenever its epochs so far reach
    the next count (a learning curve from one fit), with ``dp_epsilon``
    differentially private at that epsilon and :data:`DP_DELTA` (the mean-embedding's
    one release, or DP-SGD); draw ``num_samples`` class-balanced samples (clipped to
    [0, 1]), and score them; an ODE generator (flow, score) is sampled and scored once
    per entry of ``sample_steps`` (its own ``steps`` if empty) and of
    ``sample_guidance`` (classifier-free guidance scales; its own ``guidance_scale`` if
    empty; a scale other than 1 needs ``class_dropout > 0``).
    ``generator=REAL_IMAGES`` scores ``num_samples`` class-balanced real training
    images (with ``train_per_class``, those images themselves) the same way: the
    ceiling a generator's samples aim at (no parameters, no seconds). ``on_row`` is
    called with each row as soon as it is scored. With ``checkpoint`` (a ``.npz``
    path; torch generators without ``dp_epsilon``) the fit is saved there after every
    count and, where the file already holds a fit of the same settings, goes on from
    it: the counts asked must then be at least its epochs (a count equal to them is
    scored without fitting: the saved fit sampled anew), and ``fit_seconds`` includes
    the seconds of the runs before. With ``filter_samples`` a judge (the dataset's
    classifier trained 3 epochs on the generator's training images, seed ``seed + 1``:
    not the reference) refuses every sample it reads as another class than its label,
    and that sample is drawn again (:func:`~flower_synth.bench.consistent_samples.draw_consistent`).

    Returns:
        One row per epoch count and sampling setting: ``epochs`` (the generator's so
        far; 0 for real images), ``steps`` and ``guidance`` (0 for generators
        without), ``acceptance`` (the share of drawn samples kept: 1 unfiltered),
        ``cas_hard`` and ``cas_soft`` (test accuracy of the dataset's classifier trained
        ``classifier_epochs`` epochs on the samples with their labels, or with the
        teacher's class probabilities), ``frechet`` (samples against the test set in
        the reference features), ``reference_accuracy`` (share of samples the
        reference assigns to their label), ``parameters`` (the generator's),
        ``fit_seconds`` (all epochs so far) and ``seconds_per_1000`` (sampling, the
        refused draws and the judge's reading included, per 1,000 kept samples); for
        an ODE generator also
        ``kinetic_energy`` (per dimension, of 1,000 sampling paths) and
        ``path_straightness`` (their energy over that of straight paths between the
        same ends: 1 is straight).
    """
    train_set, test_set = load_dataset(dataset)
    fitted = train_set  # the generator's training images
    if train_per_class:  # a client-sized training set: as many images of every class
        each = np.repeat(np.arange(train_set.num_classes), train_per_class)
        fitted = train_set.subset(_class_balanced_draw(train_set.labels, each, seed))
    real, real_labels = to_unit_range(fitted), fitted.labels
    if filter_samples and generator == REAL_IMAGES:
        raise ValueError("filter_samples filters a generator's samples, not real images")
    reference = ReferenceClassifier.load_or_train(dataset, train_set, reference_cache, seed=seed)
    test_images = to_unit_range(test_set)
    wanted = np.arange(num_samples) % train_set.num_classes

    def scores(samples: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return _scores(samples, labels, reference, test_images, test_set, classifier_epochs, seed)

    report = on_row or (lambda row: None)
    if generator == REAL_IMAGES:
        if train_per_class:  # the client's images themselves
            chosen = np.arange(len(real))
        else:
            chosen = _class_balanced_draw(real_labels, wanted, seed)
        costs = {"parameters": 0.0, "fit_seconds": 0.0, "seconds_per_1000": 0.0}
        row = {"epochs": 0.0, "steps": 0.0, "guidance": 0.0, "acceptance": 1.0}
        row |= scores(real[chosen], real_labels[chosen]) | costs
        report(row)
        return [row]
    checkpoints = _epoch_checkpoints(generator, generator_epochs, dp_epsilon)
    judge = ReferenceClassifier.train_on(fitted, seed=seed + 1) if filter_samples else None
    params = dict(generator_params)
    if generator == "mean-embedding":  # no epochs: Adam steps on the embedding
        params = {"steps": checkpoints[0] * STEPS_PER_EPOCH, "seed": seed} | params
    elif generator in EPOCH_GENERATORS:
        params = {"epochs": checkpoints[0], "seed": seed} | params
    if dp_epsilon:
        params |= _private(generator, params, len(real), dp_epsilon)
    model = build_generator(generator, train_set.num_classes, train_set.image_shape, **params)
    rows, fit_seconds, done = [], 0.0, 0
    settings = {"dataset": dataset, "generator": generator, "train_per_class": train_per_class}
    settings |= {key: value for key, value in params.items() if key != "epochs"}
    if checkpoint is not None:
        done, fit_seconds = _resume(checkpoint, model, settings, checkpoints, dp_epsilon)
    for epochs in checkpoints:
        if epochs > done:  # a count at the saved epochs is scored as it is
            if done:  # a torch generator goes on learning from where it stopped
                model.epochs = epochs - done
            started = time.perf_counter()
            model.fit(real, real_labels)
            fit_seconds += time.perf_counter() - started
            done = epochs
            if checkpoint is not None:
                save_fit(checkpoint, model, done, fit_seconds, settings)
        counted = float(epochs) if generator in IMAGE_GENERATORS else 0.0
        costs = {"epochs": counted, "fit_seconds": fit_seconds}
        sampled = _sampled_rows(model, wanted, seed, sample_steps, sample_guidance, scores, judge)
        for row in sampled:
            rows.append(row | costs)
            report(rows[-1])
    return rows


def _epoch_checkpoints(
    generator: str, generator_epochs: int | Sequence[int], dp_epsilon: float
) -> list[int]:
    """The epoch counts to score at, rising; several only for a torch generator that
    learns without differential privacy (whose budget is spent over one fit)."""
    if isinstance(generator_epochs, int):
        return [generator_epochs]
    checkpoints = sorted(int(epochs) for epochs in generator_epochs)
    if not checkpoints or checkpoints[0] < 1 or len(set(checkpoints)) < len(checkpoints):
        raise ValueError(f"generator_epochs must be distinct counts >= 1, got {generator_epochs}")
    if len(checkpoints) > 1:
        _require_a_fit_that_goes_on(
            generator,
            dp_epsilon,
            f"several generator_epochs {checkpoints} make a learning curve of one fit",
            "give one count",
        )
    return checkpoints


def _require_a_fit_that_goes_on(generator: str, dp_epsilon: float, what: str, fix: str) -> None:
    """Refuse ``what`` (a learning curve, a checkpoint) unless ``generator`` is fitted
    in epochs that a later fit goes on from: a torch generator without differential
    privacy, whose budget is spent over one fit."""
    if generator not in EPOCH_GENERATORS or dp_epsilon:
        raise ValueError(
            f"{what}, which needs a torch generator ({', '.join(sorted(EPOCH_GENERATORS))}) "
            f"without dp_epsilon; {fix}"
        )


def _resume(
    checkpoint: str | Path,
    model: Any,
    settings: dict[str, Any],
    checkpoints: list[int],
    dp_epsilon: float,
) -> tuple[int, float]:
    """The epochs and fit seconds of the fit saved at ``checkpoint``, restored into
    ``model`` (none yet: 0 and 0.0)."""
    _require_a_fit_that_goes_on(
        settings["generator"],
        dp_epsilon,
        "a checkpoint saves a fit that goes on",
        "drop the checkpoint",
    )
    if not Path(checkpoint).expanduser().exists():
        return 0, 0.0
    done, fit_seconds = load_fit(checkpoint, model, settings)
    if checkpoints[0] < done:
        raise ValueError(
            f"{checkpoint} holds a fit of {done} epochs: ask for that many (scored as it "
            "is) or more, or give another checkpoint file"
        )
    return done, fit_seconds


def _sampled_rows(
    model: Any,
    wanted: np.ndarray,
    seed: int,
    sample_steps: Sequence[int],
    sample_guidance: Sequence[float],
    scores: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    judge: ReferenceClassifier | None = None,
) -> list[dict[str, float]]:
    """Rows of ``model``'s samples of classes ``wanted`` scored, one per ODE sampling
    setting (steps x guidance scale; one row for other generators); with ``judge``,
    only samples it reads as their label (the others drawn again)."""
    settings = [(0, 0.0)]
    if isinstance(model, ODEImageModel):
        steps_list = list(sample_steps) or [model.steps]
        scales = list(sample_guidance) or [model.guidance_scale]
        settings = list(itertools.product(steps_list, scales))
    rows = []
    for steps, scale in settings:
        if steps:
            model.steps, model.guidance_scale = steps, scale
        began = time.perf_counter()
        if judge is None:
            samples, labels = model.sample(len(wanted), labels=wanted, random_state=seed)
            samples = np.clip(samples, 0.0, 1.0)  # a Gaussian's samples leave the image range
            acceptance = 1.0
        else:  # clipped as the judge reads them
            drawn = draw_consistent(model, wanted, judge, seed)
            samples, labels, acceptance = drawn.samples, drawn.labels, drawn.acceptance
        sampling = time.perf_counter() - began
        row = {"steps": float(steps), "guidance": scale, "acceptance": acceptance}
        row |= scores(samples, labels)
        if steps:  # the paths' kinetic energy, on 1,000 of them, and against straight paths
            paths = {"labels": wanted[:1000], "random_state": seed}
            row["kinetic_energy"] = model.kinetic_energy(**paths)
            row["path_straightness"] = model.kinetic_energy(**paths, relative=True)
        row["parameters"] = float(model.parameter_count())
        row["seconds_per_1000"] = 1000 * sampling / max(len(wanted), 1)
        rows.append(row)
    return rows


def _private(generator: str, params: dict[str, Any], rows: int, epsilon: float) -> dict[str, Any]:
    """What makes ``generator`` (built from ``params``, fitted once on ``rows`` images)
    spend ``(epsilon, DP_DELTA)``: the mean-embedding's one release, or DP-SGD over its
    epochs (the CVAE sampling ``z ~ N(0, I)``)."""
    if generator == "mean-embedding":
        return {"release_noise": noise_for_budget(epsilon, DP_DELTA, 1.0, 1)}
    if generator not in DP_GENERATORS:
        raise ValueError(f"{generator!r} cannot learn with differential privacy")
    batch = params.get("batch_size", DEFAULT_BATCH)
    steps = params["epochs"] * -(-(params.get("epoch_size") or rows) // batch)
    dp = DPSGD(noise_for_budget(epsilon, DP_DELTA, min(1.0, batch / rows), steps))
    return {"dp": dp, "batch_size": batch} | (
        {"latent_prior": "standard"} if generator.startswith("cvae") else {}
    )


def _class_balanced_draw(labels: np.ndarray, wanted: np.ndarray, seed: int) -> np.ndarray:
    """Indices of real examples, as many of each class as ``wanted`` asks, without
    replacement."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label, count in zip(*np.unique(wanted, return_counts=True), strict=True):
        held = np.flatnonzero(labels == label)
        if count > len(held):
            raise ValueError(
                f"{len(wanted)} real images ask {count} of class {label}, larger than the "
                f"{len(held)} the training set holds; lower the number of samples"
            )
        chosen.append(rng.choice(held, int(count), replace=False))
    return np.concatenate(chosen)


def _scores(
    samples: np.ndarray,
    labels: np.ndarray,
    reference: ReferenceClassifier,
    test_images: np.ndarray,
    test_set: Any,
    classifier_epochs: int,
    seed: int,
) -> dict[str, float]:
    """CAS with hard and teacher labels, Fréchet distance and reference accuracy
    (``test_images``: ``test_set``'s images in [0, 1])."""
    quality = generation_quality(reference, samples, labels, test_images, test_set.labels)
    teacher = class_probabilities(reference.model, samples, reference.normalization)
    return {
        f"cas_{kind}": _classification_accuracy_score(
            samples, targets, test_set, classifier_epochs, seed
        )
        for kind, targets in (("hard", labels), ("soft", teacher))
    } | {"frechet": quality.frechet, "reference_accuracy": quality.reference_accuracy}


def _classification_accuracy_score(
    samples: np.ndarray, targets: np.ndarray, test_set: Any, epochs: int, seed: int
) -> float:
    """Test accuracy of the dataset's classifier trained on ``samples`` only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = build_model(test_set.image_shape, test_set.num_classes)
        loader = make_loader(samples, targets, batch_size=64, shuffle=True, seed=seed)
        train(classifier, loader, epochs, learning_rate=0.01)
    return evaluate(classifier, test_set)[1]


def format_bound_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`generator_bound` rows (with ``generator`` names)."""
    lines = [
        "| generator | epochs | steps | guidance | kept % | CAS % (hard labels) "
        "| CAS % (soft labels) "
        "| Fréchet distance | parameters | fit s | s per 1,000 samples |",
        "|" + "---|" * len(BOUND_COLUMNS),
    ]
    for row in rows:
        costs = "| - | - | - |"  # real images
        if row["parameters"]:
            costs = (
                f"| {int(row['parameters']):,} | {row['fit_seconds']:.0f} "
                f"| {row['seconds_per_1000']:.3f} |"
            )
        lines.append(
            f"| {row['generator']} | {int(row['epochs']) or '-'} | {int(row['steps']) or '-'} "
            f"| {row['guidance'] or '-'} | {100 * row['acceptance']:.1f} "
            f"| {100 * row['cas_hard']:.2f} "
            f"| {100 * row['cas_soft']:.2f} | {row['frechet']:.3f} " + costs
        )
    return "\n".join(lines)
