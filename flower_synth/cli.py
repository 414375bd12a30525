"""The ``flower-synth`` command: ``demo`` (a short comparison run), ``equilibrium``,
``generator-bound`` and ``plot``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flower_synth.config import STRATEGIES
from flower_synth.equilibrium_check import format_equilibrium_table, run_equilibrium_experiment
from flower_synth.federation import LocalFederation
from flower_synth.generator_bound import generator_bound
from flower_synth.plotting import plot_runs
from flower_synth.results import format_summary_table, load_results, summarize
from flower_synth.strategies.metered import ROUND_MARKER

# Lighter settings that keep the demo within a few minutes on two CPU cores.
DEMO_OVERRIDES: dict[str, dict[str, int | str]] = {
    "synthetic": {"samples-per-client": 500, "download-budget": 1500, "generator-epochs": 3},
}


def find_app_dir(start: Path | None = None) -> Path:
    """The Flower app folder: the current folder if it holds the app's pyproject.toml,
    else the checkout this package was installed from (editable install)."""
    for candidate in (start or Path.cwd(), Path(__file__).resolve().parents[1]):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "flower_synth.server_app:app" in pyproject.read_text():
            return candidate
    raise FileNotFoundError(
        "no flower-synth app folder found: run from the project checkout or pass --app-dir"
    )


def print_log_line(line: str) -> None:
    """Echo a line of Flower's streamed log."""
    print(line, end="", flush=True)


def print_round_line(line: str) -> None:
    """Echo only the per-round summaries of a streamed log."""
    if ROUND_MARKER in line:
        print("  " + line[line.index(ROUND_MARKER) + len(ROUND_MARKER) :].strip(), flush=True)


def run_demo(args: argparse.Namespace) -> int:
    """Run each strategy on identical partitions and seed, then tabulate and plot."""
    app_dir = Path(args.app_dir) if args.app_dir else find_app_dir()
    output_dir = Path(args.output_dir).resolve() / time.strftime("%Y%m%d-%H%M%S")
    run_config = {
        "dataset": args.dataset,
        "partitioner": "dirichlet",
        "dirichlet-alpha": args.alpha,
        "num-server-rounds": args.rounds,
        "local-epochs": args.local_epochs,
        "seed": args.seed,
        "output-dir": str(output_dir),
    }
    with LocalFederation(simulation=True) as federation:
        for strategy in args.strategies:
            print(f"== {strategy}: {args.num_clients} clients, {args.rounds} rounds", flush=True)
            outcome = federation.run(
                app_dir,
                run_config | {"strategy": strategy} | DEMO_OVERRIDES.get(strategy, {}),
                {"num-supernodes": args.num_clients},
                on_line=print_log_line if args.verbose else print_round_line,
            )
            if outcome.returncode != 0:
                print(outcome.stdout[-4000:], outcome.stderr[-4000:], file=sys.stderr)
                return outcome.returncode
    files = sorted(output_dir.glob("*.json"))
    print(format_summary_table([summarize(load_results(f)) for f in files]))
    plot = plot_runs(files, output_dir / "accuracy.png")
    print(f"\nresults: {output_dir}\nplot:    {plot}")
    return 0


def run_equilibrium(args: argparse.Namespace) -> int:
    """Run the equilibrium experiment and print its table."""
    table = run_equilibrium_experiment(
        Path(args.app_dir) if args.app_dir else find_app_dir(),
        args.output_dir,
        num_clients=args.num_clients,
        rounds=args.rounds,
        self_trust=args.self_trust,
        samples_per_client=args.samples,
        seed=args.seed,
    )
    print(format_equilibrium_table(table))
    return 0


def run_generator_bound(args: argparse.Namespace) -> int:
    """Print the accuracy a classifier reaches on one centrally trained generator's samples."""
    outcome = generator_bound(
        args.dataset,
        args.generator,
        generator_epochs=args.generator_epochs,
        num_samples=args.samples,
        classifier_epochs=args.classifier_epochs,
        seed=args.seed,
    )
    print(" ".join(f"{key}={value:.4f}" for key, value in outcome.items()))
    return 0


def run_plot(args: argparse.Namespace) -> int:
    """Plot results files and print their summary table."""
    print(format_summary_table([summarize(load_results(f)) for f in args.files]))
    print(f"plot: {plot_runs(args.files, args.output, metric=args.metric)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="flower-synth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="short comparison run on Fashion-MNIST")
    demo.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    demo.add_argument("--dataset", default="fashion-mnist")
    demo.add_argument("--num-clients", type=int, default=10)
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--local-epochs", type=int, default=1)
    demo.add_argument("--alpha", type=float, default=0.1, help="Dirichlet concentration")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--output-dir", default="runs/demo")
    demo.add_argument("--app-dir", default=None)
    demo.add_argument("--verbose", action="store_true", help="stream Flower's log")
    demo.set_defaults(handler=run_demo)

    equilibrium = commands.add_parser(
        "equilibrium", help="check that synthetic-sample exchange reaches the Nash equilibrium"
    )
    equilibrium.add_argument("--num-clients", type=int, default=3)
    equilibrium.add_argument("--rounds", type=int, default=8)
    equilibrium.add_argument("--self-trust", type=float, default=0.5)
    equilibrium.add_argument("--samples", type=int, default=50_000, help="per client per round")
    equilibrium.add_argument("--seed", type=int, default=0)
    equilibrium.add_argument("--output-dir", default="runs/equilibrium")
    equilibrium.add_argument("--app-dir", default=None)
    equilibrium.set_defaults(handler=run_equilibrium)

    bound = commands.add_parser(
        "generator-bound", help="accuracy of a classifier trained on a central generator's samples"
    )
    bound.add_argument("--dataset", default="fashion-mnist")
    bound.add_argument("--generator", default="cvae")
    bound.add_argument("--generator-epochs", type=int, default=10)
    bound.add_argument("--samples", type=int, default=60_000)
    bound.add_argument("--classifier-epochs", type=int, default=5)
    bound.add_argument("--seed", type=int, default=0)
    bound.set_defaults(handler=run_generator_bound)

    plot = commands.add_parser("plot", help="plot results files")
    plot.add_argument("files", nargs="+")
    plot.add_argument("-o", "--output", default="accuracy.png")
    plot.add_argument("--metric", default="global_accuracy")
    plot.set_defaults(handler=run_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flower-synth`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
