"""Integrating a learnt velocity field from noise (t = 0) to data (t = 1): the
fixed-step ODE solvers of the flow and score generators, and the kinetic energy of
the paths they follow."""

from __future__ import annotations

from collections.abc import Callable

import torch

SOLVERS = ("euler", "midpoint", "heun")
# Network evaluations per step of each solver.
EVALUATIONS = {"euler": 1, "midpoint": 2, "heun": 2}

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def integrate(
    velocity: Velocity,
    x: torch.Tensor,
    times: torch.Tensor,
    solver: str = "euler",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Follow ``dx/dt = velocity(x, t)`` from ``x`` at ``times[0]`` through every time
    of ``times``; return the end point and the kinetic energy of each row's path,
    ``sum_k |v_k|^2 dt_k`` per dimension (the running cost of the mean-field game
    whose optimum the straight path is).

    Args:
        velocity: ``(x, t)`` to ``dx/dt``, ``t`` a ``(N,)`` tensor of one time.
        x: ``(N, ...)`` start points.
        times: increasing ``(K + 1,)`` grid.
        solver: ``"euler"`` (first order), ``"midpoint"`` or ``"heun"`` (second order,
            two evaluations a step).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    energy = torch.zeros(len(x), device=x.device)
    dims = x[0].numel()
    for start, end in zip(times[:-1], times[1:], strict=True):
        dt = float(end - start)
        t = torch.full((len(x),), float(start), device=x.device)
        slope = velocity(x, t)
        if solver == "midpoint":
            slope = velocity(x + 0.5 * dt * slope, t + 0.5 * dt)
        elif solver == "heun":
            ahead = velocity(x + dt * slope, torch.full_like(t, float(end)))
            slope = 0.5 * (slope + ahead)
        energy += slope.flatten(1).pow(2).sum(1) * dt / dims
        x = x + dt * slope
    return x, energy
