"""Faults a deployment meets, end to end through Flower: a rogue SuperNode among honest
ones, a SuperNode killed and restarted mid-run, a SuperLink killed mid-run and the run
resumed, and a secure deployment (TLS, authenticated SuperNodes) running both strategy
families one after the other."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from test_end_to_end import (
    DIGITS_RUN,
    SAMPLE_BYTES,
    SYNTHETIC_RUN,
    assert_all_stopped,
    single_results_file,
)

from flower_synth.app.results_files import load_results
from flower_synth.bench.federation import LocalFederation
from flower_synth.bench.processes import identities
from flower_synth.exchange.metering import ROUND_MARKER

pytestmark = pytest.mark.slow
SAMPLES = 300
ROUND_LINE = re.compile(re.escape(ROUND_MARKER) + r"round (\d+):")


class StopAfterRound(Exception):
    """Raised from the log stream to stop following a run after a round."""


def after_round(server_round: int, action=None):  # noqa: ANN001, ANN201 - a callback
    """An ``on_line`` callback that runs ``action`` once round ``server_round`` is logged
    (without ``action``: stops following the run by raising :class:`StopAfterRound`)."""
    done = []

    def on_line(line: str) -> None:
        match = ROUND_LINE.search(line)
        if match and int(match.group(1)) >= server_round and not done:
            done.append(True)
            if action is None:
                raise StopAfterRound
            action()

    return on_line


def synthetic_run(tmp_path: Path, rounds: int, nodes: int) -> dict:
    return (
        DIGITS_RUN
        | SYNTHETIC_RUN
        | {
            "samples-per-client": SAMPLES,
            "num-server-rounds": rounds,
            "min-available-clients": nodes,
            "output-dir": str(tmp_path / "results"),
        }
    )


def rogue_app(tmp_path: Path) -> Path:
    """This project as a Flower app whose ClientApp is ``tests/apps/rogue_client.py``."""
    root = tmp_path / "rogue-app"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "tests" / "apps" / "rogue_client.py", root)
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    pyproject = pyproject.replace(
        'clientapp = "flower_synth.app.client_app:app"', 'clientapp = "rogue_client:app"'
    ).replace('fab-include = ["flower_synth/**/*.py"]', 'fab-include = ["rogue_client.py"]')
    assert "rogue_client:app" in pyproject and '"rogue_client.py"' in pyproject
    (root / "pyproject.toml").write_text(pyproject)
    return root


def test_a_rogue_supernode_among_honest_ones_cannot_harm_the_run(tmp_path: Path) -> None:
    """Two honest SuperNodes and one that poisons its samples: every round rejects the
    rogue payload and keeps two pools; the server classifier learns from the honest."""
    nodes, rounds = 3, 2
    with LocalFederation(simulation=False, workdir=tmp_path / "federation") as federation:
        for partition in range(nodes):
            extra = {"rogue": 1} if partition == 2 else {}
            federation.start_supernode(partition, nodes, node_config=extra)
        outcome = federation.run(rogue_app(tmp_path), synthetic_run(tmp_path, rounds, nodes))
    assert outcome.succeeded, outcome.describe()
    data = single_results_file(tmp_path / "results")
    for record in data["rounds"]:
        assert record["clients_sampled"] == nodes
        assert record["rejected_payloads"] == 1 and record["fit_failures"] == 1
        assert record["pool_clients"] == 2
        assert set(record["label_agreement_by_client"]) == {"0", "1"}
    assert "float16 image samples must lie in" in outcome.stdout
    assert data["rounds"][-1]["global_accuracy"] > 0.3  # chance is 0.1


def test_a_supernode_killed_and_restarted_mid_run_leaves_no_ghost_pool(tmp_path: Path) -> None:
    """SuperNode 1 dies after round 1 and comes back under a new node id: its partition
    keeps one pool, the new node says it started without state, and the run finishes."""
    nodes, rounds = 2, 3
    with LocalFederation(simulation=False, workdir=tmp_path / "federation") as federation:
        supernodes = [federation.start_supernode(p, nodes) for p in range(nodes)]

        def restart_node_1() -> None:
            federation.processes.kill(supernodes[1])
            federation.start_supernode(1, nodes)

        outcome = federation.run(
            PROJECT_ROOT,
            synthetic_run(tmp_path, rounds, nodes),
            on_line=after_round(1, restart_node_1),
        )
    assert outcome.succeeded, outcome.describe()
    data = single_results_file(tmp_path / "results")
    assert [r["round"] for r in data["rounds"]] == list(range(1, rounds + 1))
    assert all(r["pool_clients"] <= nodes for r in data["rounds"])  # never a ghost beside it
    assert sum(r.get("clients_fresh_start") or 0 for r in data["rounds"]) == 1
    assert data["rounds"][-1]["pool_clients"] == nodes
    assert set(data["rounds"][-1]["label_agreement_by_client"]) == {"0", "1"}


def test_a_run_whose_superlink_was_killed_resumes_without_losing_or_doubling_a_round(
    tmp_path: Path,
) -> None:
    """The SuperLink (and with it the ServerApp and the simulation) is killed after
    round 1; a new SuperLink runs the same settings with ``resume=true``: the results
    file continues from the checkpoint to the last round."""
    rounds, clients = 3, 3
    run_config = synthetic_run(tmp_path, rounds, clients) | {"resume": True}
    with LocalFederation(simulation=True, workdir=tmp_path / "first") as federation:
        with pytest.raises(StopAfterRound):
            federation.run(
                PROJECT_ROOT, run_config, {"num-supernodes": clients}, on_line=after_round(1)
            )
        federation.processes.kill(federation.superlink)  # a crash: SIGKILL, no shutdown
    (partial,) = (tmp_path / "results").glob("*.json")
    assert not load_results(partial)["finished"]
    assert partial.with_suffix(".checkpoint.npz").is_file()

    with LocalFederation(simulation=True, workdir=tmp_path / "second") as federation:
        outcome = federation.run(PROJECT_ROOT, run_config, {"num-supernodes": clients})
    assert outcome.succeeded, outcome.describe()
    data = single_results_file(tmp_path / "results")  # the same file, continued
    assert data["finished"] is True
    assert [r["round"] for r in data["rounds"]] == list(range(1, rounds + 1))
    (resumed_after,) = data["resumed"]
    assert 1 <= resumed_after < rounds
    first_resumed = data["rounds"][resumed_after]
    assert first_resumed["bytes_down"] > 0  # the pools came back from the checkpoint
    assert first_resumed["clients_fresh_start"] == clients  # client state was lost; said so
    assert not partial.with_suffix(".checkpoint.npz").exists()  # a finished run needs none
    assert data["rounds"][-1]["global_accuracy"] > 0.3  # chance is 0.1


def test_a_secure_deployment_runs_both_strategy_families_and_refuses_an_unknown_node(
    tmp_path: Path,
) -> None:
    """A SuperLink with TLS and SuperNode authentication: the two registered SuperNodes
    run the synthetic strategy (the defaults) and then GMM prototypes over encrypted
    connections, each node's state surviving between rounds outside the simulation
    engine; a third SuperNode with a key the SuperLink does not know never takes part."""
    nodes, rounds = 2, 2
    with LocalFederation(
        simulation=False, workdir=tmp_path / "federation", tls=True, node_auth=True
    ) as federation:
        keys = [federation.node_key(f"node-{p}") for p in range(nodes)]
        registered = [federation.register_supernode(key) for key in keys]
        for partition, key in enumerate(keys):
            federation.start_supernode(partition, nodes, key=key)
        federation.start_supernode(0, nodes, key=federation.node_key("stranger"))
        synthetic_outcome = federation.run(PROJECT_ROOT, synthetic_run(tmp_path, rounds, nodes))
        gmm_config = DIGITS_RUN | {
            "strategy": "gmm-prototype",
            "num-server-rounds": rounds,
            "min-available-clients": nodes,
            "output-dir": str(tmp_path / "gmm-prototype"),
        }
        gmm_outcome = federation.run(PROJECT_ROOT, gmm_config)
        started = identities(federation.processes.pids())
        stranger_log = sorted((tmp_path / "federation").glob("supernode-0-*.log"))[-1]
        refused = stranger_log.read_text(errors="replace")
    assert len(set(registered)) == nodes
    for outcome in (synthetic_outcome, gmm_outcome):
        assert outcome.succeeded, outcome.describe()
    assert len(started) >= 1 + nodes
    assert_all_stopped(started)
    # Flower 1.41 refuses an unknown key when the node activates, and the node exits
    assert "Failed to activate SuperNode" in refused, refused

    first, second = single_results_file(tmp_path / "results")["rounds"]
    assert first["clients_sampled"] == second["clients_sampled"] == nodes
    assert first["bytes_down"] == 0
    # each node sends 0.2 samples per training image (at most SAMPLES), deflated: far
    # less than that many uncompressed samples; in round 2 each gets the other's pool
    for record in (first, second):
        assert record["fit_failures"] == record["rejected_payloads"] == 0
        assert 0 < record["bytes_up"] < nodes * SAMPLES * SAMPLE_BYTES / 4
    assert 0 < second["bytes_down"] < nodes * SAMPLES * SAMPLE_BYTES / 4
    assert (first["client_rounds_min"], second["client_rounds_min"]) == (1, 2)
    assert second["global_accuracy"] > 0.3  # chance is 0.1

    first, second = single_results_file(tmp_path / "gmm-prototype")["rounds"]
    assert first["bytes_down"] == 0 < second["bytes_down"]
    assert second["fit_failures"] == 0
    assert (first["client_rounds_min"], second["client_rounds_min"]) == (1, 2)
    assert second["personalized_accuracy"] > 0.6


def test_with_supernode_authentication_a_partition_stays_with_its_nodes_key(
    tmp_path: Path,
) -> None:
    """SuperNode authentication and ``partition-handover=false``: SuperNode 1 dies after
    round 1 and a registered SuperNode with another key claims its partition: refused,
    while the owner is away too, and partition 1 keeps the owner's pool; the owner
    restarted with its key comes back under its node id (what the SuperLink does with
    a registered key), so its partition is its own again."""
    nodes, rounds = 2, 4
    with LocalFederation(
        simulation=False, workdir=tmp_path / "federation", tls=True, node_auth=True
    ) as federation:
        keys = [federation.node_key(f"node-{p}") for p in range(nodes)]
        owner_ids = [federation.register_supernode(key) for key in keys]
        impostor_key = federation.node_key("impostor")
        impostor_id = federation.register_supernode(impostor_key)
        supernodes = [federation.start_supernode(p, nodes, key=keys[p]) for p in range(nodes)]

        def impostor_replaces_node_1() -> None:
            federation.processes.kill(supernodes[1])
            federation.start_supernode(1, nodes, key=impostor_key)

        outcome = federation.run(
            PROJECT_ROOT,
            synthetic_run(tmp_path, rounds, nodes) | {"partition-handover": False},
            on_line=after_round(1, impostor_replaces_node_1),
        )
        federation.start_supernode(1, nodes, key=keys[1])
        activated = f"Activated node_id={owner_ids[1]}"
        superlink_log = tmp_path / "federation" / "superlink.log"
        deadline = time.monotonic() + 120
        while superlink_log.read_text(errors="replace").count(activated) < 2:
            assert time.monotonic() < deadline, "SuperNode 1 did not come back"
            time.sleep(0.5)
    assert outcome.succeeded, outcome.describe()
    refusal = (
        f"node {impostor_id} claims partition 1, which belongs to node {owner_ids[1]} "
        "for the whole run"
    )
    assert refusal in outcome.stdout, outcome.stdout[-3000:]
    data = single_results_file(tmp_path / "results")
    assert [r["round"] for r in data["rounds"]] == list(range(1, rounds + 1))
    assert sum(r["rejected_payloads"] for r in data["rounds"]) >= 1  # the impostor's
    for record in data["rounds"]:
        assert record["pool_clients"] == nodes  # partition 1 kept its owner's pool
        assert set(record["label_agreement_by_client"]) <= {"0", "1"}
