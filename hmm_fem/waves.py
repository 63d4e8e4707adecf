"""Effective wave speeds from an effective stiffness: the Christoffel problem.

For a plane wave ``u = a exp(i k (n . x - v t))`` in a homogeneous anisotropic medium
of stiffness ``C`` and density ``rho``, the polarisation ``a`` and the phase velocity
``v`` solve the Christoffel eigenproblem

    Gamma(n) a = rho v^2 a,    Gamma_ik(n) = C_ijkl n_j n_l.

With the homogenised ``C*`` and the volume-averaged density (exact for long waves) this
gives the long-wave speeds of the composite as a function of direction. Stiffness
matrices follow :mod:`hmm_fem.voigt` (Voigt notation, engineering shears); a 2D (3x3)
stiffness is plane strain and gives the in-plane waves (one quasi-P, one quasi-S).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .voigt import stiffness_to_tensor

__all__ = ["christoffel", "phase_velocities", "effective_density", "plot_phase_velocities"]


def christoffel(C, directions) -> np.ndarray:
    """The Christoffel matrices ``Gamma_ik = C_ijkl n_j n_l`` for unit directions ``n``.

    Args:
        C: Voigt stiffness (3x3 in 2D, 6x6 in 3D).
        directions: ``(m, d)`` propagation directions (normalised here).

    Returns:
        ``(m, d, d)`` symmetric matrices.
    """
    C4 = stiffness_to_tensor(np.asarray(C, dtype=np.float64))
    n = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    if n.shape[1] != C4.shape[0]:
        raise ValueError(f"directions are {n.shape[1]}D but the stiffness is {C4.shape[0]}D")
    norms = np.linalg.norm(n, axis=1)
    if np.any(norms == 0):
        raise ValueError("a propagation direction is the zero vector")
    n = n / norms[:, None]
    return np.einsum("ijkl,mj,ml->mik", C4, n, n)


def phase_velocities(C, density: float, directions) -> dict[str, np.ndarray]:
    """Phase velocities and polarisations of the plane waves along ``directions``.

    Args:
        C: Voigt stiffness (3x3 plane strain, or 6x6).
        density: Mass density (effective: the volume average, see :func:`effective_density`).
        directions: ``(m, d)`` propagation directions.

    Returns:
        ``{"speeds": (m, d), "polarisations": (m, d, d)}``, speeds in descending order
        (quasi-P first, then the quasi-S modes); ``polarisations[:, :, a]`` is the unit
        polarisation of mode ``a``. Units: sqrt(stiffness unit / density unit).

    Raises:
        ValueError: if the density is not positive or C is not positive definite.
    """
    if not density > 0:
        raise ValueError(f"density must be positive, got {density}")
    gamma = christoffel(C, directions)
    eigenvalues, vectors = np.linalg.eigh(gamma / density)
    if np.any(eigenvalues <= 0):
        raise ValueError("the stiffness is not positive definite: a wave speed is imaginary")
    order = np.argsort(-eigenvalues, axis=1)
    speeds = np.sqrt(np.take_along_axis(eigenvalues, order, axis=1))
    polarisations = np.take_along_axis(vectors, order[:, None, :], axis=2)
    return {"speeds": speeds, "polarisations": polarisations}


def effective_density(densities, volume_fractions) -> float:
    """The volume-averaged density ``sum_i c_i rho_i`` (exact for long waves)."""
    densities = np.asarray(densities, dtype=np.float64)
    fractions = np.asarray(volume_fractions, dtype=np.float64)
    if not np.isclose(fractions.sum(), 1.0, atol=1e-6):
        raise ValueError(f"volume fractions sum to {fractions.sum()}, not 1")
    return float(np.dot(densities, fractions))


def plot_phase_velocities(
    C,
    density: float,
    filename: str | os.PathLike,
    num: int = 361,
    plane: tuple[int, int] = (0, 1),
    title: str = "",
) -> Path:
    """Polar plot (PNG) of the quasi-P and quasi-S phase velocities in a coordinate plane.

    Args:
        C: Voigt stiffness.
        density: Mass density.
        filename: PNG path.
        num: Number of directions.
        plane: The two axes spanning the plane of the directions (3D stiffness).
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    C = np.asarray(C, dtype=np.float64)
    dim = 2 if C.shape == (3, 3) else 3
    theta = np.linspace(0.0, 2 * np.pi, num)
    directions = np.zeros((num, dim))
    directions[:, plane[0]] = np.cos(theta)
    directions[:, plane[1]] = np.sin(theta)
    speeds = phase_velocities(C, density, directions)["speeds"]
    labels = ["quasi-P"] + [f"quasi-S{i}" if dim == 3 else "quasi-S" for i in range(1, dim)]
    figure = plt.figure(figsize=(5.5, 5.5))
    axes = figure.add_subplot(projection="polar")
    for mode in range(dim):
        axes.plot(theta, speeds[:, mode], label=labels[mode])
    axes.set_title(title or "phase velocity", pad=18)
    axes.legend(loc="lower left", bbox_to_anchor=(-0.1, -0.12), ncol=dim)
    filename = Path(filename)
    filename.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(filename, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return filename
