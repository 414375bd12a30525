"""Model sizes scaled by a client's capacity."""

from __future__ import annotations


def scaled_units(width: float, *units: int) -> tuple[int, ...]:
    """Each of ``units`` (layer widths or channels of the original network) times
    ``width``, rounded, at least 1.

    Raises:
        ValueError: if ``width`` is not positive.
    """
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return tuple(max(1, round(count * width)) for count in units)
