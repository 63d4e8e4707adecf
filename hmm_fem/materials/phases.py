"""Phase properties as the users give them, turned into validated arrays.

A cell problem takes one property per phase, by phase name or tag. The functions here
accept the forms the documentation promises and fail with a message that names the
phase and says which forms are accepted.
"""

from __future__ import annotations

import numpy as np

from ..voigt import isotropic_stiffness, lame, voigt_size
from .validation import require_spd, require_young_poisson

__all__ = ["as_conductivity", "as_stiffness", "as_lame", "as_young_poisson", "VOIGT_LABELS"]

#: Names of the Voigt components, by dimension (the order of :mod:`hmm_fem.voigt`).
VOIGT_LABELS = {2: ("xx", "yy", "xy"), 3: ("xx", "yy", "zz", "yz", "xz", "xy")}


def as_conductivity(value, dim: int, what: str) -> np.ndarray:
    """A conductivity as a ``dim x dim`` SPD matrix: a scalar, ``dim`` diagonal values or a matrix.

    Raises:
        ValueError: naming ``what``, if the shape is wrong or the matrix is not SPD.
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = float(arr) * np.eye(dim)
    elif arr.ndim == 1 and arr.shape[0] == dim:
        arr = np.diag(arr)
    if arr.shape != (dim, dim):
        raise ValueError(
            f"{what} has shape {np.asarray(value).shape}; give a scalar, {dim} diagonal values "
            f"or a {dim}x{dim} matrix"
        )
    return require_spd(arr, what, "Conductivities are positive physical quantities.")


def as_stiffness(value, dim: int, what: str) -> np.ndarray:
    """A stiffness as a validated Voigt matrix, from ``(E, nu)`` (plane strain in 2D) or a matrix.

    Raises:
        ValueError: naming ``what``, if the form is not accepted or the matrix is not SPD.
    """
    n = voigt_size(dim)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{what} is {value!r}; give (E, nu) or a {n}x{n} Voigt stiffness matrix"
        ) from err
    if arr.shape == (2,):
        E, nu = require_young_poisson(*(float(v) for v in arr), what, value)
        return isotropic_stiffness(E, nu, dim, plane="strain")
    if arr.shape != (n, n):
        raise ValueError(
            f"{what} has shape {arr.shape}; give (E, nu) (isotropic) or a {n}x{n} Voigt "
            f"stiffness matrix (order {', '.join(VOIGT_LABELS[dim])}, engineering shears)"
        )
    return require_spd(arr, what, "A stiffness stores a positive strain energy.")


def as_young_poisson(value, what: str) -> tuple[float, float]:
    """``(E, nu)`` of an isotropic phase, checked (``E > 0``, ``-1 < nu < 0.5``), or an error."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is {value!r}; give (E, nu)") from err
    if arr.shape != (2,):
        raise ValueError(
            f"{what} has shape {arr.shape}; give (E, nu), Young's modulus and Poisson ratio "
            "(isotropic; plane strain in 2D)"
        )
    E, nu = require_young_poisson(*(float(v) for v in arr), what, value)
    return float(E), float(nu)


def as_lame(value, what: str) -> tuple[float, float]:
    """Lame ``(mu, lambda)`` of an isotropic phase given as ``(E, nu)``, or a clear error."""
    lam, mu = lame(*as_young_poisson(value, what))
    return float(mu), float(lam)
