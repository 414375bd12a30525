"""Clients on different modalities: the composited data set, the variables a pool
carries on the wire, the server's routing by them, and the composited client's model
with the clean item as a latent."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fit_result, idle_federation
from flwr.app import MetricRecord, RecordDict
from flwr.common import parameters_to_ndarrays

from flower_synth.app.client_app import synthetic_learner
from flower_synth.app.config import RunSettings
from flower_synth.data import ClientData, ImageDataset, load_client_data
from flower_synth.data.composite import (
    BACKGROUND_PEAK,
    composite_client_data,
    composite_images,
)
from flower_synth.strategies import SyntheticSampleStrategy
from flower_synth.synthetic.composited import MASK_STATE, CompositedModality
from flower_synth.wire.payload import PayloadError, SampleBatch, decode_samples, encode_samples
from flower_synth.wire.variables import (
    CLEAN,
    COMPOSITED,
    COMPOSITED_MODEL,
    describe_groups,
    download_groups,
    pool_variables,
    variables_code,
    variables_of_code,
)

SHAPE = (1, 8, 8)


def items(n: int, seed: int = 0) -> np.ndarray:
    """Bright squares on black: clean items."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, 28, 28), np.uint8)
    for image in images:
        top, left = rng.integers(4, 14, 2)
        image[0, top : top + 10, left : left + 10] = rng.integers(180, 256)
    return images


def test_the_composited_data_set_is_fixed_by_the_seed() -> None:
    clean = items(20)
    first, again, other = (composite_images(clean, seed) for seed in (4, 4, 5))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # every pixel is the brighter of item and background; backgrounds stay dim
    assert (first >= clean).all()
    assert (first[clean == 0] <= round(255 * BACKGROUND_PEAK)).all()
    assert (first[clean == 255] == 255).all()
    assert (first != clean).mean() > 0.3  # the background shows


def test_a_composited_client_keeps_its_labels_and_every_split() -> None:
    train = ImageDataset(items(12), np.arange(12) % 3, num_classes=3)
    data = ClientData(train=train, test=train.subset(np.arange(4)), unlabelled=items(5, 1))
    composited = composite_client_data(data, seed=7)
    assert np.array_equal(composited.train.labels, train.labels)
    assert composited.num_unlabelled == 5 and len(composited.test) == 4
    assert not np.array_equal(composited.train.images, train.images)
    assert np.array_equal(composite_client_data(data, 7).unlabelled, composited.unlabelled)


def test_pool_variables_name_the_label_and_one_sample_variable() -> None:
    assert pool_variables("c,s") == CLEAN and pool_variables("x,c") == COMPOSITED
    for bad in ("c", "s", "c,s,x", "c,c", "c,S", "c,t", "", None, 3):
        with pytest.raises(PayloadError, match="pool_variables"):
            pool_variables(bad)


def test_variables_travel_as_numbers_like_every_metric() -> None:
    codes = {variables_code(v): v for v in (CLEAN, COMPOSITED, COMPOSITED_MODEL)}
    assert codes == {3: CLEAN, 5: COMPOSITED, 7: COMPOSITED_MODEL}
    assert all(variables_of_code(code, "m") == v for code, v in codes.items())
    for bad in (0, 8, -1, 2.5, True, "3", None):
        with pytest.raises(PayloadError, match="metric m"):
            variables_of_code(bad, "m")


def test_a_download_with_a_pool_the_model_lacks_is_refused_with_the_reason() -> None:
    text = describe_groups([(CLEAN, 3), (COMPOSITED, 2)])
    assert text == "c,s:3;c,x:2"
    groups = download_groups(text, 5, COMPOSITED_MODEL)
    assert groups == [(CLEAN, slice(0, 3)), (COMPOSITED, slice(3, 5))]
    assert download_groups(None, 4, CLEAN) == [(CLEAN, slice(0, 4))]
    with pytest.raises(PayloadError, match=r"model has only \(c,s\): it lacks x"):
        download_groups(text, 5, CLEAN)
    with pytest.raises(PayloadError, match="counts 5 rows, the download holds 6"):
        download_groups(text, 6, COMPOSITED_MODEL)
    with pytest.raises(PayloadError, match="must read like"):
        download_groups("c,s:three", 3, CLEAN)


def payload(label: int, n: int) -> list[np.ndarray]:
    return encode_samples(np.full((n, *SHAPE), 0.5), np.full(n, label), "uint8")


def test_the_server_routes_pools_by_the_variables_each_model_has() -> None:
    """Clients 0 and 2 hold clean items, 1 and 3 composited images: the clean clients
    never receive a (c, x) pool; a composited client receives every other pool, its
    rows named by their variables."""
    manager, proxies = idle_federation(4)
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=20,
        sample_allocation="equal",
        download_ratio=0,
    )
    strategy.configure_fit(1, None, manager)
    composited = {"pool_variables": 5, "model_variables": 7}  # (c, x) and (c, s, x)
    results = [
        (proxy, fit_result(payload(i, 20), {"partition_id": i} | (composited if i % 2 else {})))
        for i, proxy in enumerate(proxies)
    ]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 0
    assert strategy.exchange.pools.variables == {
        "partition-0": CLEAN,
        "partition-1": COMPOSITED,
        "partition-2": CLEAN,
        "partition-3": COMPOSITED,
    }
    received = {
        proxy.cid: (decode_samples(parameters_to_ndarrays(ins.parameters)).labels, ins.config)
        for proxy, ins in strategy.configure_fit(2, None, manager)
    }
    for clean in ("node-0", "node-2"):
        labels, config = received[clean]
        assert {1, 3}.isdisjoint(labels.tolist()) and len(labels) == 20
        assert "pool_variables" not in config  # a download of clean items says nothing
    labels, config = received["node-1"]
    assert labels.tolist() == [0] * 20 + [2] * 20 + [3] * 20  # grouped by variables
    assert config["pool_variables"] == "c,s:40;c,x:20"
    # a resumed server routes the same way
    restored = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10)
    restored.exchange.load_state(strategy.exchange.state())
    assert restored.exchange.pools.variables == strategy.exchange.pools.variables
    assert restored.exchange.pools.model_variables["partition-1"] == COMPOSITED_MODEL


def test_a_pool_its_own_model_lacks_is_that_clients_failure() -> None:
    manager, proxies = idle_federation(4)
    strategy = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, samples_per_client=10)
    strategy.configure_fit(1, None, manager)
    lacking = {"pool_variables": 5, "model_variables": 3}  # (c, x) from a (c, s) model
    bad = [lacking, {"pool_variables": 8}, {"pool_variables": 7}, {"model_variables": 2.5}]
    results = [
        (proxy, fit_result(payload(i, 10), {"partition_id": i, **metrics}))
        for i, (proxy, metrics) in enumerate(zip(proxies, bad, strict=True))
    ]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 4 and metrics["pool_clients"] == 0


def test_the_composited_client_lays_clean_items_over_its_backgrounds() -> None:
    own = composite_images(items(64, 2), seed=3)
    modality = CompositedModality(own, mask_steps=5, batch_size=8)
    clean = items(6, 9).astype(np.float32) / 255
    composited = np.full((4, 1, 28, 28), 0.25, np.float32)
    received = SampleBatch(np.concatenate([clean, composited]), np.arange(10) % 10)
    groups = download_groups("c,s:6;c,x:4", 10, modality.model_variables)
    state = RecordDict()
    adopted = modality.adopt(received, groups, state, seed=1)
    assert MASK_STATE in state  # the inference network persists across rounds
    assert np.array_equal(adopted.labels, received.labels)
    assert np.array_equal(adopted.samples[6:], composited)  # (c, x) rows as they are
    rendered = adopted.samples[:6]
    assert (rendered >= clean).all() and (rendered > clean).any()
    again = modality.adopt(received, groups, RecordDict(), seed=1)
    assert np.array_equal(again.samples, adopted.samples)


class Node:
    """What a learner needs of a Flower context: its state."""

    def __init__(self) -> None:
        self.state = RecordDict()


def test_clients_take_only_pools_their_models_have(digits_settings) -> None:
    """On digits, partition 0 clean and partition 1 composited: the clean client refuses
    a download of composited images; the composited client takes clean items in and
    says what its pool and model carry."""
    settings = RunSettings.from_run_config(
        digits_settings.to_run_config()
        | {
            "strategy": "synthetic",
            "generator": "gaussian",
            "modality": "clean,composited",
            "mask-steps": 20,
        }
    )
    scheme = settings.partition_scheme(2)
    clean_data = load_client_data(scheme, 0)
    composited_data = composite_client_data(load_client_data(scheme, 1), settings.seed + 1)
    images = clean_data.train.images[:30].astype(np.float32) / 255
    arrays = encode_samples(images, clean_data.train.labels[:30], "uint8")
    config = {"num_samples": 50, "self_trust": 0.5, "server_round": 2}
    clean = synthetic_learner(settings, clean_data, Node(), 0, None)
    with pytest.raises(PayloadError, match="lacks x"):
        clean.fit(arrays, config | {"pool_variables": "c,x:30"})
    assert clean.fit(arrays, config).metrics["received_samples"] == 30
    composited = synthetic_learner(settings, composited_data, Node(), 1, None)
    assert isinstance(composited.modality, CompositedModality)
    fitted = composited.fit(arrays, config)
    assert fitted.metrics["pool_variables"] == variables_code(COMPOSITED)
    assert fitted.metrics["model_variables"] == variables_code(COMPOSITED_MODEL)
    assert fitted.metrics["received_samples"] == 30
    assert MASK_STATE in composited.state
    MetricRecord(dict(fitted.metrics))  # a Message-API reply carries them: numbers only


def test_modality_and_share_real_are_set_per_partition() -> None:
    settings = RunSettings.from_run_config(
        {"modality": "clean,composited", "share-real": "true,false"}
    )
    assert [settings.modality_for(pid) for pid in range(3)] == ["clean", "composited", "clean"]
    assert [settings.share_real_for(pid) for pid in range(3)] == [True, False, True]
    assert RunSettings.from_run_config({"share-real": True}).share_real_for(5)
    with pytest.raises(ValueError, match="unknown modality 'audio'"):
        RunSettings(modality="clean,audio")
    with pytest.raises(ValueError, match="unknown share-real 'yes'"):
        RunSettings(share_real="yes")


def test_without_sleep_steps_clean_items_are_taken_as_they_are() -> None:
    modality = CompositedModality(composite_images(items(8), seed=3), mask_steps=0)
    received = SampleBatch(items(4, 9).astype(np.float32) / 255, np.arange(4))
    state = RecordDict()
    groups = download_groups(None, 4, modality.model_variables)
    assert modality.adopt(received, groups, state, seed=0) is received
    assert MASK_STATE not in state
