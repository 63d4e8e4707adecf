"""Finite-strain FE² elasticity: Neo-Hookean cells at the macro quadrature points."""

import dolfinx.fem.petsc
import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.cells import HyperelasticModel
from hmm_fem.coupling import NonlinearProblem
from hmm_fem.macro import StaticElasticity
from hmm_fem.voigt import lame


def left(x):
    return np.isclose(x[0], 0.0)


def right(x):
    return np.isclose(x[0], 1.0)


def stretch_problem(comm, model, **options):
    plate = mesh.create_unit_square(comm, 4, 4)
    return StaticElasticity(
        plate,
        model,
        dirichlet=[(left, (0.0, 0.0)), (right, (0.15, 0.05))],
        body_force=(0.0, -0.2),
        quadrature_degree=1,
        **options,
    )


def l2(u, comm):
    return np.sqrt(
        comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(u, u) * ufl.dx)), op=MPI.SUM)
    )


@pytest.fixture(scope="module")
def coarse_square():
    return cells.square(0.3, mesh_size=0.15)


def test_homogeneous_cell_equals_a_pure_ufl_neo_hookean_solve(coarse_square):
    """Both phases equal: P*(F) is the Neo-Hookean stress, so FE² must reproduce a
    DOLFINx hyperelastic solve with the same energy (an independent reference)."""
    E, nu = 2.0, 0.3
    model = HyperelasticModel(coarse_square, {"matrix": (E, nu), "inclusion": (E, nu)})
    fe2 = stretch_problem(MPI.COMM_WORLD, model)
    report = fe2.solve(steps=2)
    assert len(report.accepted) >= 2

    lmbda, mu = lame(E, nu)
    V = fe2.V
    u, v = fem.Function(V), ufl.TestFunction(V)
    F = ufl.Identity(2) + ufl.grad(u)
    J = ufl.det(F)
    psi = mu / 2 * (ufl.tr(F.T * F) - 2) - mu * ufl.ln(J) + lmbda / 2 * ufl.ln(J) ** 2
    dx = ufl.dx(metadata={"quadrature_degree": 1})
    residual = (
        ufl.derivative(psi * dx, u, v) - ufl.inner(fem.Constant(fe2.mesh, (0.0, -0.2)), v) * dx
    )
    reference = dolfinx.fem.petsc.NonlinearProblem(
        residual,
        u,
        bcs=fe2.bcs,
        petsc_options_prefix="neo_hookean_reference_",
        petsc_options={
            "snes_rtol": 1e-12,
            "snes_atol": 1e-13,
            "ksp_type": "preonly",
            "pc_type": "lu",
        },
    )
    reference.solve()
    assert reference.solver.getConvergedReason() > 0
    assert l2(u - fe2.u, fe2.mesh.comm) < 1e-8 * l2(u, fe2.mesh.comm)


def test_two_phase_newton_is_quadratic(coarse_square):
    model = HyperelasticModel(coarse_square, {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)})
    fe2 = stretch_problem(MPI.COMM_WORLD, model)
    report = fe2.solve(steps=1)
    rates = NonlinearProblem.convergence_rates(report.residual_norms, floor=1e-9)
    assert len(rates) >= 1 and rates[-1] > 1.7, report.residual_norms
    # the composite is stiffer than the matrix alone: smaller sag under the same load
    soft = stretch_problem(
        MPI.COMM_WORLD,
        HyperelasticModel(coarse_square, {"matrix": (1.0, 0.3), "inclusion": (1.0, 0.3)}),
    )
    soft.solve(steps=1)
    assert fe2.mesh.comm.allreduce(fe2.u.x.array.min(), op=MPI.MIN) > soft.mesh.comm.allreduce(
        soft.u.x.array.min(), op=MPI.MIN
    )


@pytest.mark.mpi
def test_parallel_equals_serial(coarse_square):
    results = {}
    for comm in (MPI.COMM_SELF, MPI.COMM_WORLD):
        model = HyperelasticModel(coarse_square, {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)})
        # no state rounding here: it would put a floor under the Newton residual
        fe2 = stretch_problem(comm, model)
        report = fe2.solve(steps=1)
        x = ufl.SpatialCoordinate(fe2.mesh)
        value = comm.allreduce(
            fem.assemble_scalar(
                fem.form(ufl.inner(fe2.u, ufl.as_vector([1 + x[1], x[0]])) * ufl.dx)
            ),
            op=MPI.SUM,
        )
        results[comm.size] = (value, report.iterations)
    serial, parallel = results[1], results[MPI.COMM_WORLD.size]
    assert abs(parallel[0] - serial[0]) < 1e-9 * abs(serial[0])
    assert parallel[1] == serial[1]
