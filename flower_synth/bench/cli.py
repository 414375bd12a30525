"""The ``flower-synth`` command: ``compare`` (run an experiment grid and report),
``equilibrium``, ``generator-bound``, ``privacy-audit`` and ``plot``."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flower_synth.app.results_files import load_results
from flower_synth.bench.by_clients import is_scale_experiment, write_by_clients
from flower_synth.bench.by_size import is_data_scarce, labelled_axis, write_by_size
from flower_synth.bench.compare import FlowerCellRunner, round_progress, run_sweep
from flower_synth.bench.equilibrium_check import (
    format_equilibrium_table,
    run_equilibrium_experiment,
)
from flower_synth.bench.experiments import expand, load_experiment
from flower_synth.bench.generator_bound import REAL_IMAGES, format_bound_table, generator_bound
from flower_synth.bench.plotting import plot_runs
from flower_synth.bench.privacy_audit import audit_run, format_audit, runs_to_audit
from flower_synth.bench.report import write_report
from flower_synth.bench.results import format_summary_table, summarize
from flower_synth.generative import GENERATORS, ODE_GENERATORS
from flower_synth.generative.cvae import LATENT_PRIORS
from flower_synth.generative.ode_sampling import SOLVERS


def find_app_dir(start: Path | None = None) -> Path:
    """The Flower app folder: the current folder if it holds the app's pyproject.toml,
    else the checkout this package was installed from (editable install)."""
    for candidate in (start or Path.cwd(), Path(__file__).resolve().parents[2]):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "flower_synth.app.server_app:app" in pyproject.read_text():
            return candidate
    raise FileNotFoundError(
        "no flower-synth app folder found: run from the project checkout or pass --app-dir"
    )


def log(message: str) -> None:
    """Progress output, flushed at once (runs take minutes)."""
    print(message, flush=True)


def run_compare(args: argparse.Namespace) -> int:
    """Run the experiment's unfinished cells (unless --report-only), then write the report.

    ``--strategies``/``--partitions``/``--seeds`` choose which cells run; the report always covers
    the whole experiment, so a filtered run does not replace a full report."""
    config = load_experiment(args.experiment, args.overrides)
    unknown = sorted(set(args.strategies or ()) - set(config.strategies))
    if unknown:
        known = sorted(config.strategies)
        raise SystemExit(f"--strategies {unknown} are not in {args.experiment}; it has {known}")
    cells = expand(config, args.strategies, args.partitions, args.seeds)
    if not cells:
        raise SystemExit(
            "no cells to run: check --strategies / --partitions / --seeds against the YAML"
        )
    failed = 0
    if not args.report_only:
        runner = FlowerCellRunner(
            Path(args.app_dir) if args.app_dir else find_app_dir(),
            config.timeout_minutes,
            on_line=(lambda line: print(line, end="", flush=True))
            if args.verbose
            else round_progress(log),
        )
        outcomes = run_sweep(cells, runner, log)
        failed = sum(outcome.status == "failed" for outcome in outcomes)
    report = write_report(config, expand(config))
    print(report.read_text())
    log(f"report: {report}")
    if is_data_scarce(config):
        log(f"against images per class: {write_by_size(config, expand(config))}")
    labelled = labelled_axis(config)
    if labelled is not None:
        log(f"against labelled share: {write_by_size(config, expand(config), labelled)}")
    if is_scale_experiment(config):
        log(f"against the number of clients: {write_by_clients(config, expand(config))}")
    return 1 if failed else 0


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
    """Print, for each generator named, what a classifier trained on its samples of one
    centrally trained model reaches, with the samples' Fréchet distance and costs."""
    rows = []
    for name in args.generator:
        params: dict[str, Any] = {}
        if name.startswith("cvae") and not args.dp_epsilon:  # DP: z ~ N(0, I)
            params["latent_prior"] = args.latent_prior
        if name == "mean-embedding":
            params["num_features"] = args.embedding_features
        if name in ODE_GENERATORS:
            params |= {"solver": args.solver, "channels": args.channels}
            params |= {"hjb_weight": args.hjb_weight, "class_dropout": args.class_dropout}

        def report(outcome: dict[str, float], name: str = name) -> None:
            rows.append({"generator": name} | outcome)
            values = " ".join(f"{key}={value:.4f}" for key, value in outcome.items())
            print(name, values, flush=True)

        generator_bound(
            args.dataset,
            name,
            generator_epochs=args.generator_epochs,
            num_samples=args.samples,
            classifier_epochs=args.classifier_epochs,
            seed=args.seed,
            sample_steps=args.steps,
            sample_guidance=args.guidance_scale,
            train_per_class=args.train_per_class,
            dp_epsilon=args.dp_epsilon,
            on_row=report,
            filter_samples=args.filter_samples,
            checkpoint=None if args.checkpoint is None else args.checkpoint.format(generator=name),
            **params,
        )
    print(format_bound_table(rows))
    return 0


def run_plot(args: argparse.Namespace) -> int:
    """Plot results files and print their summary table."""
    print(format_summary_table([summarize(load_results(f)) for f in args.files]))
    print(f"plot: {plot_runs(args.files, args.output, metric=args.metric)}")
    return 0


def run_privacy_audit(args: argparse.Namespace) -> int:
    """Audit every run under the given paths that kept what its clients shared."""
    runs = runs_to_audit([Path(path) for path in args.paths])
    if not runs:
        raise SystemExit(
            f"no results file under {args.paths} has a .shared.npz beside it or its "
            "clients' audits: run with keep-shared = true"
        )
    rows = []
    for results in runs:
        log(f"auditing {results}")
        rows += audit_run(results, args.num_clients, args.max_images)
    table = format_audit(rows)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")
        print(f"privacy audit: {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="flower-synth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    compare = commands.add_parser(
        "compare",
        help="run every cell of an experiment (simulations/*.yaml) that has no results yet, "
        "then write report.md",
    )
    compare.add_argument("experiment", help="experiment YAML, e.g. simulations/fmnist.yaml")
    compare.add_argument(
        "overrides", nargs="*", help="omegaconf dotlist overrides, e.g. rounds=3 num_clients=5"
    )
    compare.add_argument(
        "--strategies", nargs="+", default=None, help="strategy keys of the YAML (variants too)"
    )
    compare.add_argument("--partitions", nargs="+", default=None, help="partition names")
    compare.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds to run")
    compare.add_argument(
        "--report-only", action="store_true", help="write the report from existing results"
    )
    compare.add_argument("--app-dir", default=None)
    compare.add_argument("--verbose", action="store_true", help="stream Flower's whole log")
    compare.set_defaults(handler=run_compare)

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
    bound.add_argument(
        "--generator",
        nargs="+",
        default=["cvae"],
        choices=[REAL_IMAGES, *GENERATORS],
        help=f"one or more; '{REAL_IMAGES}': real training images of the same count",
    )
    epochs = "epochs; several (torch generators): one fit scored at each count so far"
    bound.add_argument("--generator-epochs", type=int, nargs="+", default=[10], help=epochs)
    bound.add_argument("--samples", type=int, default=20_000)
    bound.add_argument("--classifier-epochs", type=int, default=5)
    bound.add_argument("--seed", type=int, default=0)
    bound.add_argument(
        "--steps", type=int, nargs="+", default=[8], help="flow, score: ODE steps, one or more"
    )
    bound.add_argument("--solver", choices=SOLVERS, default="euler", help="flow, score")
    bound.add_argument("--channels", type=int, default=16, help="flow, score: U-Net width")
    bound.add_argument("--hjb-weight", type=float, default=0.0, help="flow, score")
    bound.add_argument(
        "--class-dropout",
        type=float,
        default=0.0,
        help="flow, score: share of training labels dropped (guidance needs it > 0)",
    )
    bound.add_argument(
        "--guidance-scale",
        type=float,
        nargs="+",
        default=[1.0],
        help="flow, score: classifier-free guidance scales, one or more (1: none)",
    )
    bound.add_argument("--latent-prior", choices=LATENT_PRIORS, default="class", help="cvae")
    bound.add_argument(
        "--train-per-class", type=int, default=0, help="fit on this many images a class (0: all)"
    )
    bound.add_argument(
        "--dp-epsilon", type=float, default=0.0, help="fit with DP at this epsilon, delta 1e-5"
    )
    bound.add_argument(
        "--embedding-features", type=int, default=10_000, help="mean-embedding: features"
    )
    bound.add_argument(
        "--checkpoint",
        default=None,
        help="torch generators: save the fit here (.npz; '{generator}' is replaced by the "
        "generator's name) after every epoch count, and go on from it where it exists "
        "(an epoch count equal to the saved one: scored without fitting)",
    )
    bound.add_argument(
        "--filter-samples",
        action="store_true",
        help="draw again every sample a classifier trained on the same images reads as "
        "another class (rejection sampling; the kept share is printed)",
    )
    bound.set_defaults(handler=run_generator_bound)

    audit = commands.add_parser(
        "privacy-audit",
        help="membership-inference AUC and memorisation ratio of what runs kept with "
        "keep-shared, per client (docs/PRIVACY.md)",
    )
    audit.add_argument("paths", nargs="+", help="results files or folders holding them")
    audit.add_argument(
        "--num-clients", type=int, default=None, help="default: read off what the run kept"
    )
    audit.add_argument("--max-images", type=int, default=1000, help="members per client at most")
    audit.add_argument("-o", "--output", default=None, help="also write the table here")
    audit.set_defaults(handler=run_privacy_audit)

    plot = commands.add_parser("plot", help="plot results files")
    plot.add_argument("files", nargs="+")
    plot.add_argument("-o", "--output", default="accuracy.png")
    plot.add_argument("--metric", default="global_accuracy")
    plot.set_defaults(handler=run_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flower-synth`` console script.

    SIGTERM is handled like Ctrl-C, so ``kill PID`` also stops the federation of the
    run in progress (by process id) before the command exits.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("flower-synth: interrupted; the processes it started are stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
