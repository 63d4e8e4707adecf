"""Christoffel phase velocities against exact speeds."""

import numpy as np
import pytest

from hmm_fem.voigt import isotropic_stiffness, lame
from hmm_fem.waves import effective_density, phase_velocities, plot_phase_velocities


@pytest.mark.parametrize("dim", [2, 3])
def test_isotropic_speeds_in_every_direction(dim):
    E, nu, rho = 70.0, 0.33, 2.7
    lam, mu = lame(E, nu)
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(50, dim))
    result = phase_velocities(isotropic_stiffness(E, nu, dim), rho, directions)
    speeds = result["speeds"]
    assert np.allclose(speeds[:, 0], np.sqrt((lam + 2 * mu) / rho), rtol=1e-12)
    assert np.allclose(speeds[:, 1:], np.sqrt(mu / rho), rtol=1e-12)
    # the quasi-P mode of an isotropic medium is purely longitudinal
    n = directions / np.linalg.norm(directions, axis=1)[:, None]
    assert np.allclose(np.abs(np.einsum("mi,mi->m", n, result["polarisations"][:, :, 0])), 1)


def test_transversely_isotropic_axis_speeds():
    """Along the axes of an orthotropic medium: v_P = sqrt(C_ii/rho), v_S = sqrt(C_jj/rho)."""
    C = np.diag([10.0, 6.0, 4.0, 1.0, 1.5, 2.0])
    C[0, 1] = C[1, 0] = 2.0
    C[0, 2] = C[2, 0] = 1.0
    C[1, 2] = C[2, 1] = 1.5
    speeds = phase_velocities(C, 2.0, np.eye(3))["speeds"]
    assert np.allclose(speeds[0], np.sqrt(np.array([10.0, 2.0, 1.5]) / 2.0))  # along x
    assert np.allclose(speeds[2], np.sqrt(np.array([4.0, 1.5, 1.0]) / 2.0))  # along z


def test_effective_density_and_bad_input(tmp_path):
    assert effective_density([1.0, 3.0], [0.75, 0.25]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="sum"):
        effective_density([1.0, 3.0], [0.5, 0.4])
    with pytest.raises(ValueError, match="density"):
        phase_velocities(isotropic_stiffness(1.0, 0.3, 2), -1.0, [[1.0, 0.0]])
    with pytest.raises(ValueError, match="imaginary"):
        phase_velocities(-isotropic_stiffness(1.0, 0.3, 2), 1.0, [[1.0, 0.0]])
    png = plot_phase_velocities(isotropic_stiffness(1.0, 0.3, 3), 1.0, tmp_path / "v.png")
    assert png.stat().st_size > 1000
