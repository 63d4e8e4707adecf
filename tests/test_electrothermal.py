"""Electro-thermal macro problem (Joule heating with sigma(T)) against exact and fine references.

* Constant sigma: phi is linear and T = T0 + sigma V^2 / (2 k L^2) x (L - x) between two
  electrodes held at T0 (insulated sides); P2 elements hold both exactly.
* Arrhenius sigma(T) = A / T exp(-E / k_B T) through the micro seam (dispatcher, tangent):
  the problem is 1D, ``(sigma phi')' = 0`` gives a constant current density ``j`` with
  ``phi' = j / sigma(T)``, ``k T'' = -j^2 / sigma(T)``, ``int phi' = V``: a boundary value
  problem with the unknown ``j``, solved finely with scipy's ``solve_bvp``; the P1 error
  falls like h^2.
* The KMC micro model on 1 and 2 ranks gives the same solution and the same solves.
"""

import math

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from hmm_fem.macro.electrothermal import ElectroThermal
from hmm_fem.micro import MicroModel, MicroResponse
from hmm_fem.micro.kmc.ion_hopping import BOLTZMANN_EV, HoppingMaterial, IonConductivityModel

L, T0, K_TH = 1.0, 300.0, 1.0


def bar(comm, n):
    return dmesh.create_rectangle(comm, [[0.0, 0.0], [L, 0.25 * L]], [n, max(1, n // 4)])


def electrodes(V):
    return dict(
        voltage=[(lambda x: np.isclose(x[0], 0.0), 0.0), (lambda x: np.isclose(x[0], L), V)],
        temperature=[(lambda x: np.isclose(x[0], 0.0) | np.isclose(x[0], L), T0)],
        thermal_conductivity=K_TH,
    )


class Arrhenius(MicroModel):
    """sigma = A / T exp(-E / k T) with its exact tangent, as a deterministic micro model."""

    inputs = {"T": ()}
    output_shape = ()

    def __init__(self, A, E):
        self.A, self.E = A, E

    def law(self, T):
        return self.A / T * np.exp(-self.E / (BOLTZMANN_EV * T))

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["T"]).reshape(-1, 1)

    def solve(self, state, context):
        T = state[0]
        s = self.law(T)
        return {"sigma": s, "dsigma": s * (self.E / (BOLTZMANN_EV * T * T) - 1 / T)}

    def respond(self, solutions, inputs, parameters):
        return MicroResponse(solutions["sigma"], {"T": solutions["dsigma"]}, dict(solutions))


def nodal_error(problem, exact):
    T = problem.T
    x = T.function_space.tabulate_dof_coordinates()[:, 0]
    local = np.abs(T.x.array - exact(x)).max(initial=0.0)
    return problem.mesh.comm.allreduce(local, op=MPI.MAX)


@pytest.mark.mpi
def test_constant_conductivity_gives_the_exact_parabola():
    sigma0, V = 2.0, 3.0
    problem = ElectroThermal(bar(MPI.COMM_WORLD, 8), lambda T: sigma0 + 0 * T, degree=2,
                             **electrodes(V))
    problem.solve()

    def exact(x):
        return T0 + sigma0 * V**2 / (2 * K_TH * L**2) * x * (L - x)

    assert nodal_error(problem, exact) < 1e-9
    assert problem.joule_power() == pytest.approx(sigma0 * V**2 / L * 0.25 * L, rel=1e-12)
    # Transient: backward Euler from T0 settles on the same steady state.
    transient = ElectroThermal(bar(MPI.COMM_WORLD, 8), lambda T: sigma0 + 0 * T, degree=2,
                               dt=0.5, heat_capacity=1.0, initial_temperature=T0,
                               **electrodes(V))
    for _ in range(40):
        transient.step()
    assert nodal_error(transient, exact) < 1e-9
    problem.destroy()  # collective: now, on every rank, not whenever the collector runs
    transient.destroy()


def arrhenius_reference(A, E, V):
    """Peak temperature of the 1D problem by solve_bvp (residual tolerance 1e-8)."""
    from scipy.integrate import solve_bvp

    def sigma(T):
        return A / T * np.exp(-E / (BOLTZMANN_EV * T))

    def rhs(x, y, p):
        j = p[0]
        return np.vstack([y[1], -(j**2) / (K_TH * sigma(y[0])), j / sigma(y[0])])

    def bc(ya, yb, p):
        return np.array([ya[0] - T0, yb[0] - T0, ya[2], yb[2] - V])

    x = np.linspace(0, L, 201)
    guess = np.vstack([np.full_like(x, T0), np.zeros_like(x), V * x / L])
    solution = solve_bvp(rhs, bc, x, guess, p=[sigma(T0) * V / L], tol=1e-8, max_nodes=100000)
    assert solution.success
    return float(solution.sol(0.5 * L)[0])


def test_arrhenius_conductivity_through_the_micro_seam_converges_to_the_fine_reference():
    # E = 0.3 eV, sigma(300 K) = 1, 10 V: sigma V^2 / (8 k) = 12.5 K without the feedback,
    # more with it (sigma grows by 3.5 % per K).
    E = 0.3
    A = 300.0 * math.exp(E / (BOLTZMANN_EV * 300.0))
    V = 10.0
    reference = arrhenius_reference(A, E, V)
    assert 14.0 < reference - T0 < 40.0  # the feedback matters
    errors = []
    for n in (8, 16):
        problem = ElectroThermal(bar(MPI.COMM_SELF, n), Arrhenius(A, E), **electrodes(V))
        report = problem.solve()
        rates = problem.problem.convergence_rates(report.residual_norms, floor=1e-9)
        assert len(rates) and rates[-1] > 1.7  # Newton with the micro tangent: quadratic
        errors.append(abs(problem.peak_temperature() - reference))
        problem.destroy()
    assert errors[1] < 0.01 * (reference - T0)
    assert 3.0 < errors[0] / errors[1] < 5.5  # second order


@pytest.mark.mpi
def test_kmc_conductivity_gives_the_same_answer_on_one_and_two_ranks():
    # Frozen-noise KMC on a 0.5 K grid: the intervals solved and the answer do not depend on
    # the partition; Newton converges (sigma(T) is continuous between grid nodes).
    material = HoppingMaterial(activation_energy=0.3)
    sigma300 = float(material.lattice_gas_conductivity(300.0))
    V = 10.0 / math.sqrt(sigma300)  # about the heating of the Arrhenius test

    def run(comm):
        model = IonConductivityModel(material, shape=(8, 8), duration=10.0, replicas=2, seed=4)
        problem = ElectroThermal(bar(comm, 8), model, temperature_resolution=0.5,
                                 **electrodes(V))
        report = problem.solve()
        cells = problem.conductivity_cells()
        problem.destroy()
        return problem.peak_temperature(), report.statistics.micro_solves, cells

    peak_world, solves_world, cells = run(MPI.COMM_WORLD)
    peak_self, solves_self, _ = run(MPI.COMM_SELF)
    assert peak_world == pytest.approx(peak_self, rel=1e-12)
    assert solves_world == solves_self
    assert peak_world > T0 + 3.0
    assert np.all(cells > 0)


def test_temperature_grid_is_the_linear_interpolant_with_its_slope():
    from hmm_fem.macro.electrothermal import TemperatureGrid

    law = Arrhenius(1e6, 0.3)
    grid = TemperatureGrid(law, 0.5)
    T = np.array([300.0, 300.1, 300.4, 300.5, 301.2])
    response = grid.evaluate({"T": T})
    low, high = np.floor(T / 0.5) * 0.5, np.floor(T / 0.5) * 0.5 + 0.5
    w = (T - low) / 0.5
    np.testing.assert_allclose(response.value, (1 - w) * law.law(low) + w * law.law(high),
                               rtol=1e-14)
    np.testing.assert_allclose(response.derivatives["T"], (law.law(high) - law.law(low)) / 0.5,
                               rtol=1e-12)
    assert grid.node_solves == 4  # nodes 300, 300.5, 301, 301.5, each once
    with pytest.raises(ValueError, match="resolution must be positive"):
        TemperatureGrid(law, 0.0)


def test_bad_input_is_refused():
    mesh = bar(MPI.COMM_SELF, 4)
    with pytest.raises(ValueError, match="potential on at least one electrode"):
        ElectroThermal(mesh, lambda T: 1.0 + 0 * T, voltage=[])

    class Vector(Arrhenius):
        output_shape = (2,)

    with pytest.raises(ValueError, match="single input T"):
        ElectroThermal(mesh, Vector(1.0, 0.1), **electrodes(1.0))
    with pytest.raises(RuntimeError, match="needs a time step"):
        ElectroThermal(mesh, lambda T: 1.0 + 0 * T, **electrodes(1.0)).step()
    assert ufl  # the law is any UFL function of T
