"""Which variables a pool of samples carries, and which a client's model has.

Clients on different modalities share one exchange. A pool is a set of labelled
samples of one variable: ``("c", "s")`` is a class with a clean item (the default:
every pool of a single-modality federation), ``("c", "x")`` a class with a composited
image (:mod:`flower_synth.data.composite`). A client's *model* may have more variables
than it observes: a composited client's model has ``("c", "s", "x")``, the clean item
a latent. A client takes only pools whose variables its model has: the server routes
by the variables each client reports (metrics ``pool_variables`` and
``model_variables``, numbers like every metric: the sum of ``2**i`` over the variables'
places ``i`` in :data:`VARIABLES`, :func:`variables_code`), tells the receiver which
rows carry which variables (config ``pool_variables``, e.g. ``"c,s:1200;c,x:800"``), and
the receiver refuses a download with a pool its model lacks (:func:`download_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence

from flower_synth.wire.payload import PayloadError

Variables = tuple[str, ...]

VARIABLES = ("c", "s", "x")  # the names a pool or a model may have, in code order
LABEL = "c"  # the class every pool is labelled with
CLEAN = ("c", "s")  # a class and a clean item: every pool by default
COMPOSITED = ("c", "x")  # a class and a composited image
COMPOSITED_MODEL = ("c", "s", "x")  # the clean item is the composited model's latent


def parse_variables(text: object, what: str) -> Variables:
    """``"c,s"`` as ``("c", "s")``: distinct names of :data:`VARIABLES`, at least one,
    in that order."""
    names = tuple(str(text).split(",")) if isinstance(text, str) else ()
    if not names or not set(names) <= set(VARIABLES) or len(set(names)) != len(names):
        raise PayloadError(
            f"{what} must name distinct variables of {','.join(VARIABLES)} separated by "
            f"commas, e.g. 'c,s', got {str(text)[:80]!r}"
        )
    return tuple(name for name in VARIABLES if name in names)


def variables_code(variables: Variables) -> int:
    """``variables`` as a metric: the sum of ``2**i`` over their places in
    :data:`VARIABLES` (``("c", "s")``: 3, ``("c", "x")``: 5, ``("c", "s", "x")``: 7)."""
    return sum(2 ** VARIABLES.index(name) for name in variables)


def variables_of_code(code: object, what: str) -> Variables:
    """The variables a metric :func:`variables_code` names; a number that names none
    or a variable not in :data:`VARIABLES` is refused."""
    if isinstance(code, bool) or not isinstance(code, int | float) or code != int(code):
        raise PayloadError(f"metric {what} must be an integer code of variables, got {code!r}")
    code = int(code)
    if not 0 < code < 2 ** len(VARIABLES):
        raise PayloadError(
            f"metric {what} must lie in [1, {2 ** len(VARIABLES) - 1}] (a set of "
            f"{','.join(VARIABLES)}), got {code}"
        )
    return tuple(name for place, name in enumerate(VARIABLES) if code & 2**place)


def pool_variables(names: object, what: str = "pool_variables") -> Variables:
    """A pool's variables, from a text like ``"c,s"`` (:func:`parse_variables`) or a
    tuple of names: the label ``c`` and one sample variable."""
    if not isinstance(names, tuple):
        names = parse_variables(names, what)
    if len(names) != 2 or names[0] != LABEL:
        raise PayloadError(
            f"{what} must name the label {LABEL!r} and one sample variable, e.g. 'c,s', "
            f"got {','.join(names)!r}"
        )
    return names


def check_model_has(pool: Variables, model: Variables, whose: str) -> None:
    """Refuse a pool with a variable the model lacks, naming it."""
    missing = [name for name in pool if name not in model]
    if missing:
        raise PayloadError(
            f"a pool of variables ({','.join(pool)}) reached {whose} whose model has only "
            f"({','.join(model)}): it lacks {','.join(missing)}; a client takes only pools "
            "whose variables its model has (send it to clients of that modality)"
        )


def describe_groups(groups: Sequence[tuple[Variables, int]]) -> str:
    """Config ``pool_variables`` of a download whose rows come in ``groups``, in order:
    ``"c,s:1200;c,x:800"``."""
    return ";".join(f"{','.join(variables)}:{count}" for variables, count in groups)


def download_groups(text: object, rows: int, model: Variables) -> list[tuple[Variables, slice]]:
    """The rows of a download of ``rows`` samples that carry each pool's variables, as
    its config ``pool_variables`` says (missing: every row ``("c", "s")``), each pool
    checked against the receiver's ``model`` (:func:`check_model_has`): a download that
    does not add up, or carries a pool the model lacks, is refused."""
    if text is None:
        groups = [(CLEAN, rows)]
    else:
        groups = []
        for part in str(text).split(";") if rows else []:
            variables, _, count = part.rpartition(":")
            if not count.isdigit():
                raise PayloadError(
                    f"config pool_variables must read like 'c,s:1200;c,x:800', got "
                    f"{str(text)[:80]!r}"
                )
            groups.append((pool_variables(variables), int(count)))
        if sum(count for _, count in groups) != rows:
            raise PayloadError(
                f"config pool_variables counts {sum(c for _, c in groups)} rows, the "
                f"download holds {rows}"
            )
    slices, start = [], 0
    for variables, count in groups:
        check_model_has(variables, model, "this client")
        slices.append((variables, slice(start, start + count)))
        start += count
    return slices
