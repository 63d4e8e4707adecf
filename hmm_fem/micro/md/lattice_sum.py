"""Cauchy–Born lattice sums of a pair potential: the NumPy reference of the MD micro model.

A simple (one atom per primitive cell) lattice deformed homogeneously by ``F`` has, at zero
temperature and without relaxation (none is needed: every atom sits at a centre of
inversion), the energy per reference volume::

    W(F) = 1 / (2 Omega_0) * sum_R phi(|F R|),

the sum running over the lattice vectors ``R != 0`` with ``|F R| < r_c``, and ``Omega_0``
the reference volume per atom. Its derivatives are closed forms in the same sum
(``r = F R``, ``r = |r|``):

* first Piola–Kirchhoff stress ``P = dW/dF = 1/(2 Omega_0) sum phi'(r) (r / r) (x) R``;
* Cauchy stress ``sigma = P F^T / det F = 1/(2 Omega) sum phi'(r) r (x) r / r``;
* tangent ``A_iJkL = dP_iJ / dF_kL = 1/(2 Omega_0) sum [phi'' r_i r_k / r^2 +
  phi'/r (delta_ik - r_i r_k / r^2)] R_J R_L``;
* Born elastic constants ``C_IJKL = d^2 W / dE_IJ dE_KL = 1/(2 Omega_0) sum (phi'' -
  phi'/r) / r^2 R_I R_J R_K R_L`` at ``F = I`` (fully symmetric: the Cauchy relations,
  e.g. ``C12 = C44`` for a cubic crystal, hold for every central pair potential).

These are independent of any MD engine; :mod:`hmm_fem.micro.md` is tested against them.
A stress sum is discontinuous where a neighbour shell crosses the cutoff (for a plain
truncated potential); :func:`shell_gap` tells how far a deformation is from that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

__all__ = [
    "PairPotential",
    "lennard_jones",
    "primitive_cell",
    "atomic_volume",
    "neighbour_vectors",
    "energy_density",
    "first_piola_stress",
    "cauchy_stress",
    "tangent",
    "born_constants",
    "shell_gap",
    "zero_pressure_lattice_constant",
]


@dataclass(frozen=True)
class PairPotential:
    """A pair potential truncated at ``cutoff``: ``phi(r)`` and its two derivatives.

    Attributes:
        phi: ``r -> phi(r)`` (vectorised), for ``r < cutoff``.
        dphi: ``r -> phi'(r)``.
        d2phi: ``r -> phi''(r)``.
        cutoff: Interactions vanish at and beyond it.
        name: A label.
    """

    phi: object
    dphi: object
    d2phi: object
    cutoff: float
    name: str = "pair"


def lennard_jones(
    epsilon: float = 1.0, sigma: float = 1.0, cutoff: float = 2.5, shift: str = "none"
) -> PairPotential:
    """The 12-6 Lennard-Jones potential ``4 eps ((s/r)^12 - (s/r)^6)``, truncated.

    Args:
        epsilon: Well depth.
        sigma: Length scale.
        cutoff: Truncation radius.
        shift: ``"none"`` (LAMMPS ``lj/cut``; ``"energy"`` is ``lj/cut`` with ``pair_modify
            shift yes``: forces and stresses are the same) or ``"force"`` (LAMMPS
            ``lj/smooth/linear``: energy and force both go to zero at the cutoff, so the
            stress is continuous in the deformation).

    Returns:
        The :class:`PairPotential`.

    Raises:
        ValueError: On a non-positive parameter or an unknown shift.
    """
    for name, value in (("epsilon", epsilon), ("sigma", sigma), ("cutoff", cutoff)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"lennard_jones: {name} must be positive, got {value!r}")
    if shift not in ("none", "energy", "force"):
        raise ValueError(f"lennard_jones: shift must be 'none', 'energy' or 'force', got {shift!r}")
    e, s, rc = float(epsilon), float(sigma), float(cutoff)

    def phi0(r):
        q = (s / r) ** 6
        return 4.0 * e * (q * q - q)

    def dphi0(r):
        q = (s / r) ** 6
        return -24.0 * e * (2.0 * q * q - q) / r

    def d2phi0(r):
        q = (s / r) ** 6
        return 24.0 * e * (26.0 * q * q - 7.0 * q) / r**2

    if shift == "force":
        phi_c, dphi_c = phi0(rc), dphi0(rc)

        def phi(r):
            return phi0(r) - phi_c - (r - rc) * dphi_c

        def dphi(r):
            return dphi0(r) - dphi_c
    elif shift == "energy":
        phi_c = phi0(rc)

        def phi(r):
            return phi0(r) - phi_c

        dphi = dphi0
    else:
        phi, dphi = phi0, dphi0
    return PairPotential(phi, dphi, d2phi0, rc, f"lj ({shift} shift)")


def primitive_cell(lattice: str, a: float) -> np.ndarray:
    """The primitive vectors (columns) of a simple lattice of lattice constant ``a``.

    Args:
        lattice: ``"fcc"`` (3D; ``a`` the cubic cell edge) or ``"hex"`` (2D triangular;
            ``a`` the nearest-neighbour distance).
        a: The lattice constant.

    Raises:
        ValueError: On an unknown lattice or a non-positive ``a``.
    """
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"the lattice constant must be positive, got {a!r}")
    if lattice == "fcc":
        return 0.5 * float(a) * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    if lattice == "hex":
        return float(a) * np.array([[1.0, 0.5], [0.0, np.sqrt(3.0) / 2.0]])
    raise ValueError(f"unknown lattice {lattice!r}; use 'fcc' (3D) or 'hex' (2D triangular)")


def atomic_volume(lattice: str, a: float) -> float:
    """The reference volume (area in 2D) per atom."""
    return float(abs(np.linalg.det(primitive_cell(lattice, a))))


def neighbour_vectors(F: np.ndarray, lattice: str, a: float, cutoff: float) -> np.ndarray:
    """The lattice vectors ``R != 0`` (rows) with ``|F R| < cutoff``."""
    B = primitive_cell(lattice, a)
    F = _check_F(F, B.shape[0])
    FB = F @ B
    smallest = np.linalg.svd(FB, compute_uv=False)[-1]
    n = int(np.ceil(cutoff / smallest))
    axes = [np.arange(-n, n + 1)] * B.shape[0]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, B.shape[0])
    R = grid @ B.T
    r = np.linalg.norm(R @ F.T, axis=1)
    return R[(r > 0) & (r < cutoff)]


def _check_F(F, d: int) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64)
    if F.shape != (d, d):
        raise ValueError(f"F must be {d} x {d} for this lattice, got shape {F.shape}")
    if not np.all(np.isfinite(F)) or np.linalg.det(F) <= 0:
        raise ValueError(f"F must be finite with det F > 0, got {F.tolist()}")
    return F


def _sum_terms(F, lattice, a, potential):
    F = _check_F(F, primitive_cell(lattice, a).shape[0])
    R = neighbour_vectors(F, lattice, a, potential.cutoff)
    rvec = R @ F.T
    r = np.linalg.norm(rvec, axis=1)
    return F, R, rvec, r, 0.5 / atomic_volume(lattice, a)


def energy_density(F, lattice: str, a: float, potential: PairPotential) -> float:
    """``W(F)``, the energy per reference volume."""
    _, _, _, r, c = _sum_terms(F, lattice, a, potential)
    return float(c * potential.phi(r).sum())


def first_piola_stress(F, lattice: str, a: float, potential: PairPotential) -> np.ndarray:
    """``P(F) = dW/dF`` (``d x d``)."""
    _, R, rvec, r, c = _sum_terms(F, lattice, a, potential)
    w = potential.dphi(r) / r
    return c * np.einsum("n,ni,nj->ij", w, rvec, R)


def cauchy_stress(F, lattice: str, a: float, potential: PairPotential) -> np.ndarray:
    """``sigma(F) = P F^T / det F`` (``d x d``, symmetric)."""
    F, _, rvec, r, c = _sum_terms(F, lattice, a, potential)
    w = potential.dphi(r) / r
    return c * np.einsum("n,ni,nj->ij", w, rvec, rvec) / np.linalg.det(F)


def tangent(F, lattice: str, a: float, potential: PairPotential) -> np.ndarray:
    """``A_iJkL = dP_iJ / dF_kL`` (``d x d x d x d``)."""
    F, R, rvec, r, c = _sum_terms(F, lattice, a, potential)
    d = F.shape[0]
    d1, d2 = potential.dphi(r), potential.d2phi(r)
    n = rvec / r[:, None]
    radial = np.einsum("n,ni,nk->nik", d2 - d1 / r, n, n) + np.einsum(
        "n,ik->nik", d1 / r, np.eye(d)
    )
    return c * np.einsum("nik,nj,nl->ijkl", radial, R, R)


def born_constants(lattice: str, a: float, potential: PairPotential) -> np.ndarray:
    """The Born elastic constants ``C_IJKL = d^2 W / dE dE`` at ``F = I`` (``d^4`` array)."""
    d = primitive_cell(lattice, a).shape[0]
    _, R, _, r, c = _sum_terms(np.eye(d), lattice, a, potential)
    w = (potential.d2phi(r) - potential.dphi(r) / r) / r**2
    return c * np.einsum("n,ni,nj,nk,nl->ijkl", w, R, R, R, R)


def shell_gap(F, lattice: str, a: float, cutoff: float) -> float:
    """Distance from ``cutoff`` of the nearest deformed neighbour distance ``|F R|``.

    A plain truncated potential gives a stress that jumps where this is zero; finite
    differences and comparisons must stay well inside one shell interval.
    """
    B = primitive_cell(lattice, a)
    F = _check_F(F, B.shape[0])
    R = neighbour_vectors(F, lattice, a, 1.5 * cutoff)
    return float(np.abs(np.linalg.norm(R @ F.T, axis=1) - cutoff).min())


def zero_pressure_lattice_constant(
    lattice: str, potential: PairPotential, bracket: tuple[float, float]
) -> float:
    """The lattice constant at which the T = 0 pressure of the lattice vanishes.

    Args:
        lattice: ``"fcc"`` or ``"hex"``.
        potential: The pair potential.
        bracket: ``(a_low, a_high)`` with pressures of opposite signs (choose it so that no
            shell crosses the cutoff inside it for a plain truncated potential).

    Raises:
        ValueError: If the pressure does not change sign over the bracket.
    """
    d = primitive_cell(lattice, 1.0).shape[0]

    def pressure(a):
        return -np.trace(cauchy_stress(np.eye(d), lattice, a, potential)) / d

    lo, hi = (float(b) for b in bracket)
    if pressure(lo) * pressure(hi) > 0:
        raise ValueError(
            f"the pressure does not change sign over the bracket {bracket}: "
            f"P = {pressure(lo):.4g}, {pressure(hi):.4g}"
        )
    return float(brentq(pressure, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps))
