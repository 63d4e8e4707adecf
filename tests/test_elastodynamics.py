"""Newmark elastodynamics with a homogenised stiffness."""

import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from hmm_fem.macro.elastodynamics import LinearElastodynamics
from hmm_fem.voigt import isotropic_stiffness, ufl_strain, ufl_stress_tensor


def total_energy(solver, C, rho):
    u, v = solver.u, solver.v
    sigma = ufl_stress_tensor(fem.Constant(solver.mesh, C) * ufl_strain(u), solver.dim)
    form = fem.form(
        0.5 * rho * ufl.inner(v, v) * ufl.dx + 0.5 * ufl.inner(sigma, ufl.sym(ufl.grad(u))) * ufl.dx
    )
    return solver.mesh.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)


@pytest.mark.mpi
def test_average_acceleration_newmark_conserves_energy():
    """Free vibration of an anisotropic plate (no force, free boundary): the
    average-acceleration scheme conserves kinetic + strain energy exactly (round-off)."""
    C = isotropic_stiffness(1.0, 0.3, 2)
    C[0, 0] *= 3.0  # orthotropic
    plate = mesh.create_unit_square(MPI.COMM_WORLD, 12, 12)
    solver = LinearElastodynamics(plate, C, density=1.3, dt=0.05)
    solver.v.interpolate(lambda x: np.vstack([np.sin(np.pi * x[1]), x[0] * (1 - x[0])]))
    initial = total_energy(solver, C, 1.3)
    for _ in range(20):
        solver.step()
    assert abs(total_energy(solver, C, 1.3) / initial - 1) < 1e-10
    assert np.abs(solver.u.x.array).max() > 1e-2  # it did move
    solver.destroy()


def test_bad_input_is_refused():
    plate = mesh.create_unit_square(MPI.COMM_SELF, 2, 2)
    with pytest.raises(ValueError, match="3x3"):
        LinearElastodynamics(plate, np.eye(6), 1.0, 0.1)
    with pytest.raises(ValueError, match="positive definite"):
        LinearElastodynamics(plate, -np.eye(3), 1.0, 0.1)
    with pytest.raises(ValueError, match="positive"):
        LinearElastodynamics(plate, np.eye(3), 0.0, 0.1)
