"""The leakage audit flags a release that copies its training images and passes one
drawn from a Gaussian fitted to them."""

from __future__ import annotations

import numpy as np
import pytest

from flower_synth.data import load_client_data, load_global_test
from flower_synth.generative import ClassConditionalGaussian
from flower_synth.privacy.audit import audit_release, nearest_distances


def test_nearest_distances_are_exact() -> None:
    queries = np.array([[0.0, 0.0], [3.0, 4.0]])
    references = np.array([[0.0, 1.0], [3.0, 0.0], [6.0, 8.0]])
    assert nearest_distances(queries, references).tolist() == pytest.approx([1.0, 4.0])


@pytest.fixture(scope="module")
def client(request):  # noqa: ANN001, ANN201 - the digits client 0 of 3 and the test set
    from flower_synth.app.config import RunSettings

    settings = RunSettings(dataset="digits", partitioner="dirichlet", dirichlet_alpha=0.5)
    data = load_client_data(settings.partition_scheme(3), 0)
    test = load_global_test(settings.data_source)
    train = data.train.images.astype(np.float64) / 255.0
    held_out = test.images.astype(np.float64) / 255.0
    return train, data.train.labels, held_out, test.labels


def test_a_release_that_copies_its_training_images_is_flagged(client) -> None:
    train, train_labels, held_out, held_out_labels = client
    rows = np.random.default_rng(0).permutation(len(train))[: len(train) // 2]
    audit = audit_release(
        train[rows], train_labels[rows], train, train_labels, held_out, held_out_labels
    )
    assert audit.memorisation_ratio == 0.0  # every shared sample is a training image
    assert audit.membership_auc > 0.75  # half the members sit at distance 0


def test_a_release_drawn_from_a_fitted_gaussian_passes(client) -> None:
    train, train_labels, held_out, held_out_labels = client
    gaussian = ClassConditionalGaussian(10).fit(train, train_labels)
    shared, labels = gaussian.sample(len(train), random_state=np.random.default_rng(0))
    audit = audit_release(
        np.clip(shared, 0, 1), labels, train, train_labels, held_out, held_out_labels
    )
    assert audit.memorisation_ratio > 0.9  # as close to unseen images as to its own
    assert audit.membership_auc < 0.65  # (its means, fitted to ~30 images a class, tell a little)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["synthetic", "fedavg"])
def test_a_run_keeps_what_its_clients_shared_and_the_audit_scores_every_client(
    tmp_path, strategy: str
) -> None:
    """`flwr run` with keep-shared: the pools (synthetic) or the final model (FedAvg)
    beside the results file; `flower-synth privacy-audit` scores each of the 3 clients."""
    from test_end_to_end import simulate

    from flower_synth.app.shared_files import load_shared, shared_of
    from flower_synth.bench.cli import main
    from flower_synth.bench.privacy_audit import audit_run

    run_config = {"strategy": strategy, "num-server-rounds": 2, "keep-shared": True}
    simulate(tmp_path, run_config, clients=3)
    (results,) = (tmp_path / "results").glob("*.json")
    pools, model = load_shared(shared_of(results))
    if strategy == "synthetic":
        assert sorted(pools) == ["partition-0", "partition-1", "partition-2"] and not model
        assert all(0.0 <= s.min() and s.max() <= 1.0 for s, _ in pools.values())
    else:
        assert not pools and len(model) > 0
    rows = audit_run(results)  # 3 partitions, read off what the run kept
    assert [row.client for row in rows] == [0, 1, 2]
    for row in rows:
        assert 0.0 <= row.membership_auc <= 1.0
        assert (row.memorisation_ratio is None) == (strategy == "fedavg")
    output = tmp_path / "audit.md"
    assert main(["privacy-audit", str(tmp_path / "results"), "-o", str(output)]) == 0
    assert strategy in output.read_text()


def test_the_audit_says_what_to_do_when_a_run_kept_nothing(tmp_path) -> None:
    from flower_synth.bench.cli import main

    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(SystemExit, match="keep-shared = true"):
        main(["privacy-audit", str(tmp_path)])
