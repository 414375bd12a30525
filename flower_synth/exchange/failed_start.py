"""A run whose every client fails its first round stops with their reason.

A client that cannot start (a run config its own checks refuse, a trust matrix of
another size than the federation, data it cannot load) fails every round; without this
rule the server would go on to its last round and report the run complete with no
client ever trained. Only errors count: replies the strategy rejected (a rogue payload)
are clients that ran, and an all-rejected round leaves the server standing.
"""

from __future__ import annotations

from collections.abc import Sequence


class EveryClientFailed(RuntimeError):
    """Every client of the run's first round failed: the run is stopped."""


def check_first_round(local_round: int, succeeded: int, reasons: Sequence[str]) -> None:
    """Raise :class:`EveryClientFailed` naming the clients' first reason if
    ``local_round`` is this run's first (1, counted from a resumed run's start), at least
    one client failed with an error and none replied."""
    if local_round == 1 and reasons and not succeeded:
        distinct = sorted(set(reasons))
        raise EveryClientFailed(
            f"every client failed the run's first round ({len(reasons)} errors); the run is "
            f"stopped rather than reported complete. The clients said: {'; '.join(distinct[:3])}"
        )
