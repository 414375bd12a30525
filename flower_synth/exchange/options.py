"""Keyword arguments of the strategy classes: the algorithm's, the API's sampling
ones, and FedAvg's that cannot apply without a global model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# FedAvg keywords that cannot mean anything without a global model, and what to use.
REFUSED = {
    "initial_parameters": "there is no global model to initialise: clients keep their own "
    "models and only samples or summaries travel; leave it out",
    "initial_arrays": "there is no global model to initialise: clients keep their own "
    "models and only samples or summaries travel; start with an empty ArrayRecord()",
    "inplace": "there are no weights to aggregate; leave it out",
}


def split_options(
    options: Mapping[str, Any], algorithm: type
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the options the TypedDict `algorithm` names, the rest)``."""
    keys = algorithm.__required_keys__ | algorithm.__optional_keys__
    return (
        {k: v for k, v in options.items() if k in keys},
        {k: v for k, v in options.items() if k not in keys},
    )


def refuse_unsupported(strategy: str, unsupported: Mapping[str, Any], sampling: type) -> None:
    """Raise ``TypeError`` naming every keyword ``strategy`` does not take: FedAvg's with
    the reason (:data:`REFUSED`), others with the keywords it does take."""
    if not unsupported:
        return
    reasons = [f"{key}: {REFUSED[key]}" for key in unsupported if key in REFUSED]
    unknown = sorted(key for key in unsupported if key not in REFUSED)
    if unknown:
        known = sorted(sampling.__required_keys__ | sampling.__optional_keys__)
        reasons.append(
            f"unknown keyword arguments {unknown}; besides the algorithm's own options "
            f"{strategy} takes {known}"
        )
    raise TypeError(f"{strategy}: " + "; ".join(reasons))
