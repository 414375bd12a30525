"""``flower-synth privacy-audit``: what runs' clients shared, audited against their
own training images (:mod:`flower_synth.privacy.audit`).

A run keeps what its clients shared last with ``keep-shared``; the audit rebuilds
every client's partition from the run's settings (same seed, same partitions) and
scores, per client: for synthetic exchange its pool's memorisation ratio and the
nearest-sample membership attack's AUC; for FedAvg or FedProx the loss attack's AUC
against the final model (members: the client's training images; non-members: test
images of the same classes in the same counts). Prototype clients' summaries live in
their own feature spaces, whose extractors never leave them: with ``keep-shared`` each
client audits what it sends in every round it trains and the results file records it
(:data:`~flower_synth.exchange.metrics.AUDIT_KEYS`); the audit reads each client's last
figures.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_synth.app.config import RunSettings
from flower_synth.app.results_files import load_results
from flower_synth.app.shared_files import load_shared, shared_of
from flower_synth.data import load_client_data, load_global_test
from flower_synth.exchange.metrics import AUDIT_KEYS
from flower_synth.learning.training import class_probabilities, set_weights
from flower_synth.models import build_model
from flower_synth.privacy.audit import audit_release, loss_membership_auc, matched_split


@dataclass(frozen=True)
class AuditRow:
    """One client of one run, audited."""

    run: str
    strategy: str
    client: int
    membership_auc: float
    memorisation_ratio: float | None  # None: the run shared a model, not samples


def audit_run(
    results: Path, num_clients: int | None = None, max_images: int = 1000
) -> list[AuditRow]:
    """Every client of the run whose results file is ``results`` (``num_clients``: its
    partitions; by default read off what it kept, :func:`federation_size`).

    Raises:
        FileNotFoundError: the run kept nothing (it ran without ``keep-shared``).
    """
    data = load_results(results)
    reported = reported_rows(results, data)
    if reported:
        return reported
    kept = shared_of(results)
    if not kept.is_file():
        raise FileNotFoundError(f"{kept} is missing: rerun {results.name} with keep-shared = true")
    settings = RunSettings.from_run_config(data["config"])
    pools, model_arrays = load_shared(kept)
    clients = num_clients or federation_size(pools, data["rounds"], settings.fraction_fit)
    scheme = settings.partition_scheme(clients)
    test = load_global_test(settings.data_source)
    held_out = test.images.astype(np.float32) / 255.0
    model = None
    if model_arrays:
        model = build_model(test.image_shape, test.num_classes, architecture=settings.model)
        set_weights(model, model_arrays)
    rows = []
    for client in range(clients):
        data = load_client_data(scheme, client)
        train, labels = data.train.images.astype(np.float32) / 255.0, data.train.labels
        if model is not None:
            members, non_members = matched_split(labels, test.labels, max_images, settings.seed)
            images = np.concatenate([train[members], held_out[non_members]])
            truth = np.r_[labels[members], test.labels[non_members]]
            probabilities = class_probabilities(model, images, data.normalization)
            is_member = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
            auc = loss_membership_auc(probabilities, truth, is_member)
            rows.append(AuditRow(run_name(results), settings.strategy, client, auc, None))
            continue
        if f"partition-{client}" not in pools:
            continue
        shared, shared_labels = pools[f"partition-{client}"]
        audit = audit_release(
            shared, shared_labels, train, labels, held_out, test.labels, max_images, settings.seed
        )
        rows.append(
            AuditRow(
                run_name(results),
                settings.strategy,
                client,
                audit.membership_auc,
                audit.memorisation_ratio,
            )
        )
    return rows


def reported_rows(results: Path, data: dict) -> list[AuditRow]:
    """The audits a run's clients reported of their own summaries, per client the last
    round it reported one (none for a run whose clients audited nothing)."""
    auc, ratio = (f"{key}_client_" for key in AUDIT_KEYS)
    latest: dict[int, tuple[float, float | None]] = {}
    for record in data["rounds"]:
        for key, value in record.items():
            if key.startswith(auc):
                client = key.removeprefix(auc)
                latest[int(client)] = (float(value), record.get(f"{ratio}{client}"))
    strategy = data["config"].get("strategy", "")
    return [
        AuditRow(run_name(results), strategy, client, figures[0], figures[1])
        for client, figures in sorted(latest.items())
    ]


def run_name(results: Path) -> str:
    """A results file by the two folders above it (a sweep's ``<variant>/<seed>``) and
    its name."""
    return "/".join(results.parts[-3:])


def federation_size(pools: dict, rounds: list[dict], fraction_fit: float) -> int:
    """How many partitions a run had: one past the largest partition that kept a pool,
    else the most clients a round sampled over the fraction that was sampled (exact
    where every client trained every round)."""
    if pools:
        return 1 + max(int(key.removeprefix("partition-")) for key in pools)
    sampled = max(int(r.get("clients_sampled") or 0) for r in rounds)
    return max(1, round(sampled / fraction_fit))


def runs_to_audit(paths: list[Path]) -> list[Path]:
    """The results files among ``paths`` and under the folders among them that kept
    what their clients shared, or whose clients audited what they sent."""
    found = []
    for path in paths:
        candidates = [path] if path.is_file() else sorted(path.rglob("*.json"))
        found += [c for c in candidates if shared_of(c).is_file() or reports_audit(c)]
    return found


def reports_audit(path: Path) -> bool:
    """Whether ``path`` is a results file in which clients reported audits."""
    try:
        return bool(reported_rows(path, load_results(path)))
    except ValueError:
        return False


def format_audit(rows: list[AuditRow]) -> str:
    """A markdown table: per run, the clients' membership AUC and memorisation ratio
    (mean ± std over clients, and the worst client)."""
    lines = [
        "| run | strategy | clients | membership AUC | worst | memorisation ratio | lowest |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in dict.fromkeys(row.run for row in rows):
        mine = [row for row in rows if row.run == run]
        aucs = [row.membership_auc for row in mine]
        ratios = [row.memorisation_ratio for row in mine if row.memorisation_ratio is not None]
        ratio = f"{mean_std(ratios)} | {min(ratios):.3f}" if ratios else "n/a | n/a"
        lines.append(
            f"| {run} | {mine[0].strategy} | {len(mine)} | {mean_std(aucs)} | {max(aucs):.3f} "
            f"| {ratio} |"
        )
    return "\n".join(lines)


def mean_std(values: list[float]) -> str:
    """``mean ± std`` to three decimals (std 0 for one value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"
