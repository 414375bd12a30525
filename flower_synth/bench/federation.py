"""A local Flower federation on loopback: SuperLink, optional SuperNodes, ``flwr run``.

Used by the demo, the tests and the comparison runner. Ports are picked free at
start; ``FLWR_HOME`` is a folder of the federation's own, holding the connection
in ``config.toml``; :meth:`LocalFederation.stop` ends exactly the processes it
started (see :mod:`flower_synth.bench.processes`). With ``tls``, every connection is
encrypted with certificates of a private CA made for the federation; with
``node_auth``, the SuperLink admits only SuperNodes whose public keys were registered
(:mod:`flower_synth.bench.security`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from flower_synth.bench.processes import ProcessGroup
from flower_synth.bench.security import NodeKey, TLSFiles, make_node_key, make_tls_files

CONNECTION_NAME = "flower-synth-local"
COMPLETED = "finished:completed"
RUN_ID = re.compile(r"Successfully started run (\d+)")


@dataclass(frozen=True)
class RunOutcome:
    """What became of one ``flwr run``: the run's own status as the SuperLink reports it
    (``flwr ls``; ``finished:completed`` when the ServerApp returned, ``finished:failed``
    when it raised), its details, and the streamed log. ``flwr run --stream`` exits 0
    even when the ServerApp fails, so its exit code (``returncode``) says little."""

    returncode: int
    stdout: str
    run_id: int | None
    status: str
    details: str = ""

    @property
    def succeeded(self) -> bool:
        """Whether the run finished and its ServerApp completed."""
        return self.status == COMPLETED

    def describe(self) -> str:
        """The status, its details and the end of the log, for an error message."""
        return f"run {self.run_id}: {self.status} {self.details}\n{self.stdout[-3000:]}"


STARTUP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal, as ``--run-config`` expects it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if "'" in text:
        raise ValueError(f"run-config strings cannot contain a single quote: {text!r}")
    return f"'{text}'"


def _executable(name: str) -> str:
    # Prefer the console script installed beside the running interpreter (the venv).
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"`{name}` not found; install flwr (pip install -e .)")
    return found


class LocalFederation:
    """A SuperLink on loopback, in simulation mode or with real SuperNodes.

    Args:
        simulation: run ClientApps in Flower's Ray simulation engine
            (``num-supernodes`` from the federation config) instead of SuperNodes.
        workdir: folder for ``FLWR_HOME`` and the process logs (default: a new
            temporary folder, removed on :meth:`stop`).
        tls: encrypt every connection (SuperLink with ``--ssl-*`` files, SuperNodes
            and ``flwr`` with ``--root-certificates``) instead of ``--insecure``.
        node_auth: start the SuperLink with ``--enable-supernode-auth`` (needs ``tls``
            and SuperNodes): only SuperNodes registered with :meth:`register_supernode`
            are admitted.

    Use as a context manager::

        with LocalFederation(simulation=True) as federation:
            federation.run(".", {"dataset": "digits"}, {"num-supernodes": 3})
    """

    def __init__(
        self,
        simulation: bool = True,
        workdir: str | Path | None = None,
        tls: bool = False,
        node_auth: bool = False,
    ) -> None:
        if node_auth and (not tls or simulation):
            raise ValueError("node_auth needs tls=True and simulation=False (real SuperNodes)")
        self.simulation = simulation
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="flower-synth-"))
        self.flwr_home = self.workdir / "flwr-home"
        self.port = 0
        self.processes = ProcessGroup()
        self.superlink: subprocess.Popen | None = None
        self.tls: TLSFiles | None = make_tls_files(self.workdir / "tls") if tls else None
        self.node_auth = node_auth
        self.supernodes_started = 0

    @property
    def env(self) -> dict[str, str]:
        """Environment for Flower commands: this federation's FLWR_HOME, no dependency
        installation (the app runs in the current environment), and the running
        interpreter's scripts first on PATH (the SuperLink starts ``flower-superexec``)."""
        scripts = str(Path(sys.executable).parent)
        return os.environ | {
            "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]),
            "FLWR_HOME": str(self.flwr_home),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
        }

    @property
    def node_env(self) -> dict[str, str]:
        """:attr:`env` for a SuperNode: one OpenMP thread per ClientApp process unless
        ``OMP_NUM_THREADS`` is set. The SuperNodes here share one machine, and two
        ClientApps each running torch with a thread per core slow each other down by an
        order of magnitude (measured: a digits CVAE epoch 0.1 s alone, 3-24 s beside
        another)."""
        return {"OMP_NUM_THREADS": "1"} | self.env

    def start(self) -> LocalFederation:
        """Start the SuperLink and wait until its HTTP API answers."""
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        security = "insecure = true"
        if self.tls is not None:
            security = f'root-certificates = "{self.tls.ca_certificate}"'
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION_NAME}"\n\n'
            f'[superlink.{CONNECTION_NAME}]\naddress = "127.0.0.1:{self.port}"\n{security}\n'
        )
        command = [
            _executable("flower-superlink"),
            *self._superlink_security(),
            "--disable-runtime-dependency-installation",
            "--isolation",
            "subprocess",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--database",
            str(self.workdir / "superlink.db"),
        ]
        if self.simulation:
            command.append("--simulation")
        process = self.processes.start(command, self.workdir / "superlink.log", self.env)
        self.superlink = process
        try:
            self._wait_until_healthy(process)
        except BaseException:
            # Includes Ctrl-C / SIGTERM while waiting: ``__exit__`` does not run when
            # ``__enter__`` raises, so the SuperLink would otherwise outlive the run.
            self.stop()
            raise
        return self

    def _superlink_security(self) -> list[str]:
        if self.tls is None:
            return ["--insecure"]
        arguments = [
            "--ssl-certfile",
            str(self.tls.server_certificate),
            "--ssl-keyfile",
            str(self.tls.server_key),
            "--ssl-ca-certfile",
            str(self.tls.ca_certificate),
        ]
        return [*arguments, "--enable-supernode-auth"] if self.node_auth else arguments

    def _wait_until_healthy(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "superlink.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"flower-superlink did not come up on port {self.port}:\n{log}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        scheme, context = "http", None
        if self.tls is not None:
            scheme = "https"
            context = ssl.create_default_context(cafile=str(self.tls.ca_certificate))
        url = f"{scheme}://127.0.0.1:{self.port}/health"
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as reply:
                return reply.status == 200
        except OSError:
            return False

    def node_key(self, name: str) -> NodeKey:
        """A fresh SuperNode key pair, kept in the federation's folder."""
        return make_node_key(self.workdir / "node-keys", name)

    def register_supernode(self, key: NodeKey) -> int:
        """``flwr supernode register`` the public key of ``key``; returns the node id
        the SuperLink assigned.

        Raises:
            RuntimeError: the SuperLink refused the key.
        """
        command = [
            _executable("flwr"),
            "supernode",
            "register",
            str(key.public_key),
            CONNECTION_NAME,
            "--format",
            "json",
        ]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True)
        try:
            return int(json.loads(done.stdout)["node-id"])
        except (ValueError, KeyError) as error:
            raise RuntimeError(
                f"registering {key.public_key} failed ({error}): {done.stdout}{done.stderr}"
            ) from None

    def start_supernode(
        self,
        partition_id: int,
        num_partitions: int,
        key: NodeKey | None = None,
        node_config: dict[str, Any] | None = None,
    ) -> subprocess.Popen:
        """Start a SuperNode that serves partition ``partition_id`` of
        ``num_partitions``, authenticating with ``key`` where given; ``node_config``
        adds entries to its node config."""
        if self.simulation:
            raise RuntimeError(
                "SuperNodes belong to a deployment: use LocalFederation(simulation=False)"
            )
        security = ["--insecure"]
        if self.tls is not None:
            security = ["--root-certificates", str(self.tls.ca_certificate)]
        if key is not None:
            security += ["--auth-supernode-private-key", str(key.private_key)]
        entries = {"partition-id": partition_id, "num-partitions": num_partitions}
        entries |= node_config or {}
        command = [
            _executable("flower-supernode"),
            *security,
            "--superlink",
            f"127.0.0.1:{self.port}",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--node-config",
            " ".join(f"{name}={toml_value(value)}" for name, value in entries.items()),
        ]
        self.supernodes_started += 1  # numbers every log, also after a kill
        log_path = self.workdir / f"supernode-{partition_id}-{self.supernodes_started}.log"
        return self.processes.start(command, log_path, self.node_env)

    def run(
        self,
        app_dir: str | Path,
        run_config: dict[str, Any] | None = None,
        federation_config: dict[str, Any] | None = None,
        timeout: float | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> RunOutcome:
        """``flwr run APP CONNECTION --stream`` with run-config overrides; waits for the
        end and asks the SuperLink how the run finished (:class:`RunOutcome`).

        Args:
            app_dir: folder of the Flower app (holding its ``pyproject.toml``).
            run_config: ``[tool.flwr.app.config]`` overrides.
            federation_config: simulation overrides such as ``{"num-supernodes": 10}``.
            timeout: seconds before the run is abandoned (``subprocess.TimeoutExpired``).
            on_line: called with every line of the streamed log as it arrives.

        Returns:
            The run's outcome: its status, and its streamed log (stdout and stderr).
        """
        command = [_executable("flwr"), "run", str(app_dir), CONNECTION_NAME, "--stream"]
        for key, value in (run_config or {}).items():
            command += ["--run-config", f"{key}={toml_value(value)}"]
        for key, value in (federation_config or {}).items():
            command += ["--federation-config", f"{key}={toml_value(value)}"]
        deadline = None if timeout is None else time.monotonic() + timeout
        lines: list[str] = []
        with subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            assert process.stdout is not None
            try:
                for line in process.stdout:
                    lines.append(line)
                    if on_line is not None:
                        on_line(line)
                    if deadline is not None and time.monotonic() > deadline:
                        raise subprocess.TimeoutExpired(command, timeout or 0, "".join(lines))
                returncode = process.wait()
            except BaseException:
                # Timed out or interrupted (Ctrl-C, SIGTERM): the client must not outlive
                # the federation, and Popen's exit would otherwise wait for it.
                process.kill()
                raise
        log = "".join(lines)
        match = RUN_ID.search(log)
        run_id = int(match.group(1)) if match else None
        status, details = self.run_status(run_id) if run_id is not None else ("unknown", "")
        return RunOutcome(returncode, log, run_id, status, details)

    def run_status(self, run_id: int) -> tuple[str, str]:
        """``(status, details)`` of run ``run_id`` as ``flwr ls`` reports it."""
        command = [_executable("flwr"), "ls", CONNECTION_NAME, "--run-id", str(run_id)]
        listing = subprocess.run(
            [*command, "--format", "json"], env=self.env, capture_output=True, text=True
        )
        try:
            runs = json.loads(listing.stdout)["runs"]
            (run,) = [r for r in runs if str(r["run-id"]) == str(run_id)]
        except (ValueError, KeyError) as error:
            return "unknown", f"flwr ls gave no status ({error}): {listing.stdout[-500:]}"
        return str(run["status"]), str(run.get("status-details") or "")

    def stop(self) -> None:
        """Stop every process this federation started, then remove its own workdir."""
        self.processes.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalFederation:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
