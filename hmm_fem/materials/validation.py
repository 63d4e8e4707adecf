"""Checks of material data, in one place: symmetric positive definiteness, (E, nu).

One rule decides whether a matrix is symmetric positive definite, for phase inputs
(conductivities, stiffnesses) and for computed effective tensors (K*, C*, k) alike:
:func:`spd_defect`. Callers choose the exception and the advice.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "SYMMETRY_TOLERANCE",
    "POSITIVITY_TOLERANCE",
    "spd_defect",
    "require_spd",
    "require_young_poisson",
    "require_named_arrays",
]

#: A matrix is symmetric when ``max |A - A^T| <= SYMMETRY_TOLERANCE * max |A|``: far above
#: the round-off of an assembled and solved effective tensor, far below any physical
#: asymmetry.
SYMMETRY_TOLERANCE = 1e-8
#: A symmetric matrix is positive definite when its smallest eigenvalue exceeds
#: ``POSITIVITY_TOLERANCE`` times its largest absolute eigenvalue: a zero eigenvalue
#: computed in floating point (a blocked flow direction, a singular stiffness) is
#: round-off, not a small positive value.
POSITIVITY_TOLERANCE = 1e-10


def spd_defect(matrix: np.ndarray) -> str | None:
    """What keeps ``matrix`` from being symmetric positive definite, or ``None``.

    The text is ``"is not finite"``, ``"is not symmetric"`` or ``"is not positive definite
    (eigenvalues [...])"``, to follow the name of the matrix in a message.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        return "is not finite"
    scale = float(np.abs(matrix).max()) if matrix.size else 0.0
    if np.abs(matrix - matrix.T).max(initial=0.0) > SYMMETRY_TOLERANCE * scale:
        return "is not symmetric"
    eigenvalues = np.linalg.eigvalsh(0.5 * (matrix + matrix.T))
    largest = float(np.abs(eigenvalues).max(initial=0.0))
    if largest == 0.0 or eigenvalues.min() <= POSITIVITY_TOLERANCE * largest:
        shown = ", ".join(f"{v:.6g}" for v in eigenvalues)
        return f"is not positive definite (eigenvalues {shown})"
    return None


def require_spd(
    matrix: np.ndarray, what: str, hint: str = "", error: type[Exception] = ValueError
) -> np.ndarray:
    """Return ``matrix`` if it is symmetric positive definite (:func:`spd_defect`).

    Args:
        matrix: A square array.
        what: What it is, for the message (``"conductivity of phase 'matrix' (tag 1)"``).
        hint: Why it must be positive definite, or how to fix it; appended to the message.
        error: The exception raised (``ValueError`` for user input; the cell problems
            raise :class:`~hmm_fem.cells.CellSolveError` for a computed tensor).

    Raises:
        error: naming ``what``, the defect and the values.
    """
    defect = spd_defect(matrix)
    if defect is not None:
        message = f"{what} {defect}: {np.asarray(matrix).tolist()}"
        raise error(f"{message}. {hint}" if hint else message)
    return matrix


def require_young_poisson(E: float, nu: float, what: str, given) -> tuple[float, float]:
    """Return ``(E, nu)`` if finite with ``E > 0`` and ``-1 < nu < 1/2``.

    Args:
        E: Young's modulus.
        nu: Poisson ratio.
        what: What they belong to, for the message.
        given: The value as the user gave it, for the message.

    Raises:
        ValueError: naming ``what`` and the offending modulus.
    """
    if not (np.isfinite(E) and np.isfinite(nu)):
        raise ValueError(f"{what} is not finite: (E, nu) = {given!r}")
    if E <= 0.0:
        raise ValueError(
            f"{what}: Young's modulus must be positive, got E = {E:.6g}. Moduli are positive "
            "physical quantities."
        )
    if not -1.0 < nu < 0.5:
        raise ValueError(
            f"{what}: Poisson ratio must be in (-1, 0.5), got nu = {nu:.6g} (0.5 is the "
            "incompressible limit, which this displacement formulation cannot represent)."
        )
    return E, nu


def require_named_arrays(
    values, shapes: Mapping[str, tuple[int, ...]], what: str, hint: str = ""
) -> dict[str, np.ndarray]:
    """``values`` as new float arrays with exactly the names and shapes of ``shapes``.

    For internal variables (a plastic state, a micro model's history): a dict name -> array.

    Args:
        values: The dict given.
        shapes: Name -> expected shape.
        what: What the values are and whose, for the messages (``"PlasticCell (...): the
            state"``).
        hint: How to fix it, appended to the messages.

    Raises:
        ValueError: naming ``what`` and the first offending entry, if ``values`` is not a
            dict, has other names, an entry of another shape, or a non-finite entry.
    """
    tail = f"; {hint}" if hint else ""
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{what} must be a dict name -> array with the names {sorted(shapes)}, got "
            f"{type(values).__name__}{tail}"
        )
    if set(values) != set(shapes):
        raise ValueError(f"{what} has the names {sorted(values)}, expected {sorted(shapes)}{tail}")
    checked = {}
    for name, shape in shapes.items():
        array = np.array(values[name], dtype=np.float64)
        if array.shape != tuple(shape):
            raise ValueError(f"{what}['{name}'] has shape {array.shape}, expected {shape}{tail}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{what}['{name}'] is not finite")
        checked[name] = array
    return checked
