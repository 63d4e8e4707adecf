"""Checks of phase properties shared by the cell problems."""

from __future__ import annotations

import numpy as np

__all__ = ["require_spd", "require_young_poisson"]


def require_spd(matrix: np.ndarray, what: str, hint: str) -> np.ndarray:
    """Return ``matrix`` if it is finite, symmetric and positive definite.

    Args:
        matrix: A square array.
        what: What it is, for the message (``"conductivity of phase 'matrix' (tag 1)"``).
        hint: Why it must be positive definite, appended to the message.

    Raises:
        ValueError: naming ``what`` and the offending values.
    """
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{what} is not finite: {matrix.tolist()}")
    if not np.allclose(matrix, matrix.T, rtol=1e-12, atol=0.0):
        raise ValueError(f"{what} is not symmetric: {matrix.tolist()}")
    smallest = np.linalg.eigvalsh(matrix).min()
    if smallest <= 0.0:
        raise ValueError(
            f"{what} must be positive definite; got {matrix.tolist()} with smallest "
            f"eigenvalue {smallest:.6g}. {hint}"
        )
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
