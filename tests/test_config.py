"""Run-config parsing: defaults, coercion and clear errors."""

from __future__ import annotations

import tomllib

import pytest
import torch
from conftest import PROJECT_ROOT

from flower_synth.app.config import RunSettings


def test_pyproject_run_config_matches_settings_defaults() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    run_config = pyproject["tool"]["flwr"]["app"]["config"]
    assert RunSettings.from_run_config(run_config) == RunSettings()
    assert set(run_config) == set(RunSettings().to_run_config())


def test_ints_become_floats_and_unknown_keys_are_ignored() -> None:
    settings = RunSettings.from_run_config({"learning-rate": 1, "my-own-key": "x"})
    assert settings.learning_rate == 1.0
    assert isinstance(settings.learning_rate, float)


@pytest.mark.parametrize(
    ("run_config", "message"),
    [
        ({"strategy": "fedsgd"}, "unknown strategy 'fedsgd'; choose one of"),
        ({"dataset": "imagenet"}, "unknown dataset"),
        ({"partitioner": "shards"}, "unknown partitioner"),
        ({"fraction-fit": 0.0}, r"fraction-fit must lie in \(0, 1\]"),
        ({"generator-self-trust": 1.5}, r"generator-self-trust must lie in \[0, 1\]"),
        ({"personal-self-trust": -0.1}, r"personal-self-trust must lie in \[0, 1\]"),
        ({"num-server-rounds": 0}, "num-server-rounds must be >= 1"),
        ({"learning-rate": -0.1}, "learning-rate must be > 0"),
        ({"classifier": "bayes"}, "'cvae' does not have"),
        ({"generator": "gmm,cvae", "classifier": "bayes"}, r"'cvae' does not have \(partition 1"),
        ({"sample-labels": "uniform"}, "unknown sample-labels"),
        ({"sample-allocation": "random"}, "unknown sample-allocation"),
        ({"latent-prior": "vamp"}, "unknown latent-prior"),
        ({"distill-temperature": 0.0}, "distill-temperature must be > 0"),
        ({"server-lr-decay": 1.5}, r"server-lr-decay must lie in \(0, 1\]"),
        ({"replay-rounds": 0}, "replay-rounds must be >= 1"),
        ({"client-global-eval-every": 0}, "client-global-eval-every must be >= 1"),
        ({"client-global-eval-size": -1}, "client-global-eval-size must be >= 0"),
        ({"label-shift": "0,-1"}, "label-shift must list whole numbers >= 0"),
        ({"label-shift": "0,x"}, "label-shift must be a comma-separated list of numbers"),
        ({"trust": "trusty"}, "trust must be 'uniform', 'size', 'learned' or a matrix"),
        ({"soft-label-top-k": -1}, "soft-label-top-k must be >= 0"),
        ({"dirichlet-alpha": -1.0}, "dirichlet-alpha must be > 0"),
        ({"local-test-fraction": 1.5}, r"local-test-fraction must lie in \[0, 1\)"),
        ({"max-missed-rounds": -1}, "max-missed-rounds must be >= 0"),
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"compression": "gzip"}, "unknown compression 'gzip'"),
        ({"sample-levels": 1}, r"sample-levels must lie in \[2, 256\]"),
        ({"sample-ratio": 0.0}, "sample-ratio must be a finite number > 0"),
        ({"download-ratio": float("nan")}, "download-ratio must be a finite number"),
        ({"pool-max-age": -1}, "pool-max-age must be >= 0"),
        ({"pool-age-decay": 0.0}, r"pool-age-decay must lie in \(0, 1\]"),
        ({"server-max-draws": -5}, "server-max-draws must be >= 0"),
        ({"server-batch-size": -1}, "server-batch-size must be >= 0"),
        ({"generator-min-batches": 0}, "generator-min-batches must be >= 1"),
        ({"generator": "cvae,diffusion"}, "unknown generator 'diffusion'"),
        ({"generator-solver": "rk4"}, "unknown generator-solver 'rk4'"),
        ({"generator-steps": 0}, "generator-steps must be >= 1"),
        ({"generator-channels": 0}, "generator-channels must be >= 1"),
        ({"hjb-weight": -1.0}, "hjb-weight must be >= 0"),
        ({"class-dropout": 1.0}, r"class-dropout must lie in \[0, 1\)"),
        ({"guidance-scale": 2.0}, "guidance-scale 2.0 needs the unconditional velocity"),
        ({"generator-epoch-scale": 0.0}, "generator-epoch-scale must be a finite number > 0"),
        ({"classifier-min-batches": -1}, "classifier-min-batches must be >= 0"),
        ({"fresh-sample-fraction": 1.5}, r"fresh-sample-fraction must lie in \(0, 1\]"),
        ({"device": "gpu"}, "unknown device 'gpu'; use 'cpu', 'cuda'"),
        ({"device": "xla"}, "device 'xla' is not supported"),
    ],
)
def test_bad_values_are_named(run_config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunSettings.from_run_config(run_config)


def test_the_server_classifier_has_its_own_batch_and_step_unless_zero() -> None:
    assert RunSettings().server_sgd_params()["batch_size"] == 256
    clients = RunSettings(server_batch_size=0, server_learning_rate=0.0, batch_size=32)
    assert clients.server_sgd_params() | {"seed": 0} == clients.sgd_params() | {"seed": 0}


def test_wrong_type_says_how_to_quote() -> None:
    with pytest.raises(TypeError, match="run-config key 'seed' must be int.*quote strings"):
        RunSettings.from_run_config({"seed": "1"})
    with pytest.raises(TypeError, match="'download' must be bool"):
        RunSettings.from_run_config({"download": 1})


def test_bayes_classifiers_pair_with_density_generators() -> None:
    settings = RunSettings(generator="gaussian,gmm,cvae", classifier="bayes,bayes,model")
    assert settings.kind_for(settings.classifier, 2) == "model"


def test_a_trust_matrix_must_fit_the_federation() -> None:
    settings = RunSettings(trust="0.6,0.4;0.3,0.7")
    settings.check_federation(2)
    with pytest.raises(ValueError, match="2 rows but the federation has 3 partitions"):
        settings.check_federation(3)


def test_capacity_is_a_per_partition_scale_for_strategies_without_shared_models() -> None:
    settings = RunSettings(strategy="synthetic", capacity="0.25, 0.5,1")
    assert [settings.capacity_for(pid) for pid in range(4)] == [0.25, 0.5, 1.0, 0.25]
    assert RunSettings(strategy="local-only", capacity="0.5").capacity_for(3) == 0.5
    with pytest.raises(ValueError, match="'fedavg' cannot exchange"):
        RunSettings(strategy="fedavg", capacity="0.5,1")
    with pytest.raises(ValueError, match="comma-separated list of numbers"):
        RunSettings(strategy="synthetic", capacity="small,large")
    with pytest.raises(ValueError, match="finite and > 0"):
        RunSettings(strategy="synthetic", capacity="0,1")


def test_capacity_scales_the_generator_and_the_classifier_of_each_partition() -> None:
    from flower_synth.app.client_app import generator_params

    settings = RunSettings(strategy="synthetic", capacity="0.25,1", latent_dim=16)
    small = generator_params(settings, "cvae", 0, 100)
    large = generator_params(settings, "cvae", 1, 100)
    assert (small["latent_dim"], large["latent_dim"]) == (4, 16)
    assert (small["hidden_dim"], large["hidden_dim"]) == (64, 256)


def test_a_generator_epoch_draws_the_clients_data_and_at_least_min_batches() -> None:
    from flower_synth.app.client_app import generator_params

    assert generator_params(RunSettings(), "cvae", 0, 480)["epoch_size"] == 720  # 1.5 x its data
    scaled = RunSettings(generator_epoch_scale=0.25)
    assert generator_params(scaled, "flow", 0, 4000)["epoch_size"] == 1000
    floor = RunSettings(generator_min_batches=8)  # the floor runs had before the key
    assert generator_params(floor, "cvae", 0, 480)["epoch_size"] == 8 * 256
    assert generator_params(floor, "cvae", 0, 5000)["epoch_size"] == 7500  # above the floor


def test_the_run_config_builds_flow_and_score_generators_scaled_by_capacity() -> None:
    from flower_synth.app.client_app import generator_params
    from flower_synth.generative import FlowMatching, ScoreModel, build_generator

    settings = RunSettings(
        strategy="synthetic",
        capacity="0.5,1",
        generator="flow,score",
        generator_steps=4,
        generator_solver="heun",
        hjb_weight=0.5,
        class_dropout=0.1,
        guidance_scale=1.5,
    )
    for partition, kind, expected, channels in (
        (0, "flow", FlowMatching, 8),
        (1, "score", ScoreModel, 16),
    ):
        params = generator_params(
            settings, settings.kind_for(settings.generator, partition), partition, 100
        )
        model = build_generator(kind, 10, (1, 28, 28), **params)
        assert type(model) is expected and model.channels == channels
        assert (model.steps, model.solver, model.hjb_weight) == (4, "heun", 0.5)
        assert (model.class_dropout, model.guidance_scale, model.device) == (0.1, 1.5, "cpu")
        assert "latent_dim" not in params


def test_a_device_this_machine_lacks_is_refused_where_the_model_is_built() -> None:
    from flwr.app import Context, RecordDict

    from flower_synth.app.client_app import learner_for

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    settings = RunSettings.from_run_config({"device": "cuda"})  # the name is fine anywhere
    assert settings.sgd_params()["device"] == "cuda"
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config={"device": "cuda", "dataset": "digits"},
    )
    with pytest.raises(ValueError, match="asks for CUDA, which this machine lacks; use 'cpu'"):
        learner_for(context)


@pytest.mark.parametrize(("size", "expected"), [(500, 500), (0, 10_000)])
def test_clients_score_the_global_test_subset_the_run_config_asks_for(size, expected) -> None:
    from flwr.app import Context, RecordDict

    from flower_synth.app.client_app import learner_for

    run_config = {
        "dataset": "fashion-mnist",
        "strategy": "synthetic",
        "client-global-eval-size": size,
    }
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 10},
        state=RecordDict(),
        run_config=run_config,
    )
    learner = learner_for(context, global_eval=True)
    assert len(learner.global_test) == expected
    assert learner.global_test.class_counts().min() == expected // 10
