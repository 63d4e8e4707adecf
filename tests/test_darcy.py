"""Macro Darcy flow with permeabilities from periodic Stokes cells."""

import dolfinx.fem.petsc
import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.cells import PermeabilityCell, PermeabilityModel
from hmm_fem.macro import SteadyDarcy


def left(x):
    return np.isclose(x[0], 0.0)


def right(x):
    return np.isclose(x[0], 1.0)


def l2(u, comm):
    return np.sqrt(
        comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(u, u) * ufl.dx)), op=MPI.SUM)
    )


@pytest.fixture(scope="module")
def pore_cell():
    return cells.square(0.3, mesh_size=0.1)


def test_uniform_cell_equals_a_constant_permeability_solve(pore_cell, tmp_path):
    mu, L = 2.0, 1e-3
    model = PermeabilityModel(pore_cell, viscosity=mu, length_scale=L)
    plate = mesh.create_unit_square(MPI.COMM_WORLD, 6, 6)
    darcy = SteadyDarcy(plate, model, source=1.0, degree=2, dirichlet=[(left, 1.0), (right, 0.0)])
    darcy.solve()
    k = PermeabilityCell(pore_cell).permeability() * L**2
    V = darcy.V
    p, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    K = fem.Constant(plate, k / mu)
    dx = ufl.dx(metadata={"quadrature_degree": 2})
    reference = dolfinx.fem.petsc.LinearProblem(
        ufl.inner(K * ufl.grad(p), ufl.grad(v)) * dx,
        1.0 * v * dx,
        bcs=darcy.bcs,
        petsc_options_prefix="darcy_reference_",
        petsc_options={"ksp_type": "preonly", "pc_type": "lu"},
    ).solve()
    assert l2(reference - darcy.p, plate.comm) < 1e-10 * l2(reference, plate.comm)
    assert darcy.statistics.micro_solves <= 1 and model.num_cells_built == 1
    files = darcy.write(tmp_path / f"darcy{plate.comm.rank}")
    assert files["micro"].is_dir()


@pytest.mark.mpi
def test_graded_filter_builds_a_bank_and_matches_serial():
    results = {}
    for comm in (MPI.COMM_SELF, MPI.COMM_WORLD):
        model = PermeabilityModel(
            lambda f: cells.square(f, mesh_size=0.1), parameter_resolution=0.1
        )
        plate = mesh.create_unit_square(comm, 6, 6)
        x = ufl.SpatialCoordinate(plate)
        darcy = SteadyDarcy(
            plate,
            model,
            dirichlet=[(left, 1.0), (right, 0.0)],
            parameters={"solid_fraction": 0.1 + 0.4 * x[0]},
        )
        darcy.solve()
        k = darcy.permeability()[:, 0, 0]
        f = darcy.coupling.cell_averages("solid_fraction")
        order = np.argsort(f)
        assert np.all(np.diff(k[order]) <= 1e-15)  # more solid, less permeable
        assert model.num_cells_built <= 6  # solid fractions 0.1 ... 0.5 at resolution 0.1
        flow = comm.allreduce(fem.assemble_scalar(fem.form(darcy.p * ufl.dx)), op=MPI.SUM)
        results[comm.size] = flow
    assert abs(results[MPI.COMM_WORLD.size] - results[1]) < 1e-10 * abs(results[1])


def test_darcy_needs_a_pressure_model(pore_cell):
    from hmm_fem.cells import ConductivityModel

    plate = mesh.create_unit_square(MPI.COMM_SELF, 2, 2)
    with pytest.raises(ValueError, match="p and grad_p"):
        SteadyDarcy(plate, ConductivityModel(pore_cell, {"matrix": 1.0, "inclusion": 2.0}))


def test_compaction_nonlinear_darcy_matches_the_kirchhoff_transform():
    """phi(p) = 0.35 - 0.2 p: the filter compacts where the pressure is low. In 1D the flux
    is q = (1/(mu L)) int_{p_out}^{p_in} k(phi(p)) dp (Kirchhoff transform), with k the
    interpolant of separate cell solves; Newton must converge to it."""
    from hmm_fem.cells import LinearLaw

    law = LinearLaw(0.35, beta=-0.2 / 0.35, T0=0.0)  # 0.35 (1 - 0.571 p) = 0.35 - 0.2 p
    model = PermeabilityModel(
        lambda f: cells.square(f, mesh_size=0.1), parameter_resolution=0.05, compaction=law
    )
    plate = mesh.create_rectangle(
        MPI.COMM_WORLD, [[0, 0], [1, 0.25]], [32, 2], cell_type=mesh.CellType.quadrilateral
    )
    darcy = SteadyDarcy(plate, model, degree=2, dirichlet=[(left, 1.0), (right, 0.0)])
    report = darcy.solve()
    assert report.iterations >= 2  # nonlinear
    flux = darcy.coupling.cell_averages("value")[:, 0]
    q = plate.comm.allreduce(flux.sum(), op=MPI.SUM) / plate.comm.allreduce(len(flux), op=MPI.SUM)
    pressures = np.linspace(0.0, 1.0, 4001)
    k = np.array([model.solve(np.array([p]))["k"][0, 0] for p in pressures])
    q_exact = np.trapezoid(k, pressures)
    assert abs(q / q_exact - 1) < 2e-4  # measured 2e-5
