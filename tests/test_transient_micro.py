"""Transient micro problems (issue 12): the relaxing cell of the parabolic HMM, the
double-porosity block, and both against a direct fine-scale simulation (DNS).

References: the steady cell problem (ConductivityCell, another code path), the modal
expansion of the semi-discrete cell problem with exact time integrals, the exact leading
eigenvalue 2 pi^2 D / (c L^2) of a square block, exact discrete limits of the block
model, and the DNS of FineScaleHeat, which must be approached as eps falls.
"""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from dolfinx import mesh
from mpi4py import MPI

from hmm_fem.cells import ConductivityCell, ConductivityModel
from hmm_fem.cells.transient import (
    KERNELS,
    DiffusionBlock,
    TransientConductivityCell,
    block_cell,
    in_block,
)
from hmm_fem.macro import TransientHeat
from hmm_fem.macro.double_porosity import DoublePorosityHeat
from hmm_fem.macro.fine_scale import FineScaleHeat, point_values, relative_l2_difference
from hmm_fem.materials.laws import LinearLaw
from hmm_fem.micro.cell_models import BlockExchangeModel, MacroAxes, TransientConductivityModel

SLOW_INCLUSIONS = {"matrix": 1.0, "inclusion": 0.1}


def left(x):
    return np.isclose(x[0], 0.0)


@pytest.fixture(scope="module")
def cell4():
    return block_cell(4, 0.5)


# -- geometry -----------------------------------------------------------------------------------
def test_block_cell_has_the_exact_block_and_rejects_misaligned_edges():
    cell = block_cell(8, 0.5)
    assert cell.phase_volume_fractions()["inclusion"] == pytest.approx(0.25, abs=1e-14)
    with pytest.raises(ValueError, match="mesh lines"):
        block_cell(8, 0.4)
    x = np.array([[0.01, 0.1, 0.2, 0.35], [0.125] * 4])
    assert in_block(x, 0.25, 0.5).tolist() == [False, True, False, True]


# -- the relaxing periodic cell ----------------------------------------------------------------
def test_transient_cell_starts_at_the_arithmetic_mean_and_relaxes_to_the_steady_k_star(cell4):
    """K(0) = <K> exactly; backward Euler's steady limit is the steady cell problem, solved
    here by ConductivityCell (pinned, CHOLMOD: another path): equal to round-off."""
    transient = TransientConductivityCell(cell4, SLOW_INCLUSIONS)
    steady = ConductivityCell(cell4, SLOW_INCLUSIONS).effective_tensor()
    times, K = transient.flux_history(60 * transient.relaxation_time(), 120)
    assert np.allclose(K[0], (0.75 + 0.025) * np.eye(2), atol=1e-14)
    assert np.allclose(K[-1], steady, atol=1e-12)
    # Energy decreases: K(t) is non-increasing and stays above K*.
    assert np.all(np.diff(K[:, 0, 0]) <= 1e-15)
    assert transient.factorisations == 1


def _modal_window(cell, window, kernel):
    """K_tau from the generalised eigenpairs of the cell (A phi = lambda M phi) and exact
    time integrals of K(t)|Y| = int K - sum_k (phi_k.b_i)(phi_k.b_j)(1 - e^(-lambda_k t))/lambda_k.
    """
    system = cell.system_matrices()
    keep = system["free"]
    A = system["A"][keep][:, keep].toarray()
    M = system["M"][keep][:, keep].toarray()
    lam, phi = scipy.linalg.eigh(A, M)
    lam, phi = lam[1:], phi[:, 1:]  # the constant mode is not loaded
    proj = phi.T @ system["loads"][keep]
    k = KERNELS[kernel]
    decay = np.array(
        [scipy.integrate.quad(lambda s, a=a: k(s) * np.exp(-a * window * s), 0, 1)[0] for a in lam]
    )
    weights = (1.0 - decay) / lam
    integral = system["integral"]
    return (integral - np.einsum("ki,k,kj->ij", proj, weights, proj)) / cell.cell.volume


@pytest.mark.parametrize("kernel", ["uniform", "smooth"])
def test_windowed_tensor_matches_the_modal_expansion(cell4, kernel):
    """Time stepping and kernel quadrature against the eigen-expansion with exact
    integrals: equal within the O(dt) error of backward Euler (bounded by
    (K(0) - K*) * few / steps)."""
    cell = TransientConductivityCell(cell4, SLOW_INCLUSIONS)
    window = 2.0 * cell.relaxation_time()
    steps = 800
    K = cell.windowed_tensor(window, kernel, steps)
    exact = _modal_window(cell, window, kernel)
    spread = 0.75 + 0.025 - ConductivityCell(cell4, SLOW_INCLUSIONS).effective_tensor()[0, 0]
    assert np.abs(K - exact).max() < 4.0 * spread / steps
    assert np.abs(K - exact).max() > 0  # not the same computation


def test_smoother_kernels_and_longer_windows_reduce_the_window_error(cell4):
    """The initial transient enters the average as (lambda tau)^-1 (uniform), ^-2 (linear),
    ^-3 (smooth): kernels vanishing at the start beat the uniform one by far, and doubling
    a long window cuts the errors by about 2, more, and the most (towards 2, 4, 8)."""
    cell = TransientConductivityCell(cell4, SLOW_INCLUSIONS)
    steady = ConductivityCell(cell4, SLOW_INCLUSIONS).effective_tensor()[0, 0]
    t_r = cell.relaxation_time()

    def error(kernel, n):
        return cell.windowed_tensor(n * t_r, kernel, 32 * n)[0, 0] - steady

    errors = {k: [error(k, n) for n in (8, 16)] for k in ("uniform", "linear", "smooth")}
    assert all(e > 0 for es in errors.values() for e in es)  # K_tau lies above K*
    assert max(errors["smooth"][0], errors["linear"][0]) < errors["uniform"][0] / 3
    rates = {k: e[0] / e[1] for k, e in errors.items()}
    assert 1.6 < rates["uniform"] < 2.2
    assert rates["uniform"] < rates["linear"] < rates["smooth"]
    assert rates["smooth"] > 4.0


def test_window_of_one_macro_step_reads_the_time_step_from_the_context(cell4):
    """window='step': tau = dt / eps^2 from the solve context; one simulation per dt."""
    model = TransientConductivityModel(cell4, SLOW_INCLUSIONS, window="step", period=0.25)
    assert model.time_dependent
    msh = mesh.create_interval(MPI.COMM_WORLD, 4, [0.0, 1.0])
    heat = TransientHeat(msh, MacroAxes(model), dt=0.01, dirichlet=[(left, 1.0)])
    heat.step()
    heat.step()
    heat.dt.value = 0.02
    heat.step()
    assert heat.statistics.total(msh.comm).micro_solves == 3  # one per (time, dt) key
    assert model.cell_problem.factorisations == 2  # one per micro step size
    expected = model.cell_problem.windowed_tensor(0.02 / 0.25**2, "smooth", 64)
    assert np.allclose(heat.coupling.last_response.solutions["K"][0], expected, atol=1e-14)
    with pytest.raises(ValueError, match="period"):
        TransientConductivityModel(cell4, SLOW_INCLUSIONS, window="step")


def test_transient_model_bad_input_is_refused(cell4):
    with pytest.raises(ValueError, match="positive cell time"):
        TransientConductivityModel(cell4, SLOW_INCLUSIONS, window=-1.0)
    with pytest.raises(ValueError, match="constant phase conductivities"):
        TransientConductivityModel(cell4, {"matrix": LinearLaw(1.0, 0.1), "inclusion": 0.1})
    with pytest.raises(ValueError, match="unknown window kernel"):
        TransientConductivityModel(cell4, SLOW_INCLUSIONS, kernel="box").evaluate(
            {"T": np.zeros(1), "grad_T": np.ones((1, 2))}
        )


# -- the double-porosity block ------------------------------------------------------------------
def test_block_eigenvalue_converges_to_2_pi_squared_d_over_l_squared():
    """Lumped P1 eigenvalues converge at O(h^2); and the relaxation time the block
    simulation measures (log-fit of the heat deficit after a unit step of U, corrected for
    backward Euler) is 1/lambda_1 of the discrete block."""
    exact = DiffusionBlock(0.5, 0.2, 2.0, 4).exact_leading_eigenvalue()
    assert exact == pytest.approx(2 * np.pi**2 * 0.2 / (2.0 * 0.25))
    errors = [
        abs(DiffusionBlock(0.5, 0.2, 2.0, n).eigenvalues(1)[0] / exact - 1) for n in (8, 16, 32)
    ]
    assert errors[0] < 0.05
    assert 3.5 < errors[0] / errors[1] < 4.5
    assert 3.5 < errors[1] / errors[2] < 4.5
    block = DiffusionBlock(0.5, 0.2, 2.0, 8)
    measured = block.measured_relaxation_time()
    assert measured == pytest.approx(block.relaxation_time(), rel=1e-3)
    with pytest.raises(ValueError, match="dt > 0"):
        block.step(np.zeros(block.num_interior), 0.0, 1.0, 0.0)


def _run_double_porosity(diffusivity, dt=0.02, steps=5, n=16, comm=MPI.COMM_WORLD, side=0.5):
    msh = mesh.create_interval(comm, n, [0.0, 1.0])
    cell = block_cell(8, side)
    fractures = MacroAxes(ConductivityModel(cell, {"matrix": 1.0, "inclusion": 1e-9}))
    # The block meshed as in the DNS (8 cells per period, block side 0.5: 4 cells).
    blocks = BlockExchangeModel(side, diffusivity, 1.0, cells_per_side=4)
    heat = DoublePorosityHeat(
        msh, fractures, blocks, fracture_capacity=1 - side**2, dt=dt, dirichlet=[(left, 1.0)]
    )
    for _ in range(steps):
        heat.step()
    return heat, blocks


def _run_single(capacity, dt=0.02, steps=5, n=16, comm=MPI.COMM_WORLD):
    msh = mesh.create_interval(comm, n, [0.0, 1.0])
    fractures = MacroAxes(ConductivityModel(block_cell(8, 0.5), {"matrix": 1.0, "inclusion": 1e-9}))
    heat = TransientHeat(msh, fractures, heat_capacity=capacity, dt=dt, dirichlet=[(left, 1.0)])
    for _ in range(steps):
        heat.step()
    return heat


def test_fast_blocks_give_the_quasi_static_law():
    """D -> infinity: the block equilibrates within a step (error ~ 1/(lambda_1 dt) ~ 6e-8),
    and backward Euler of the memory model is that of <c> dU/dt = div(K_f* grad U)."""
    fast, _ = _run_double_porosity(diffusivity=1e7)
    quasi = _run_single(capacity=1.0)
    assert np.abs(fast.T.x.array - quasi.T.x.array).max() < 1e-6


def test_impermeable_blocks_give_the_fracture_only_law():
    """D -> 0: only the boundary nodes of the block follow U; with their heat capacity (an
    O(h) band) the law is exactly phi_f c_f + m_B, and m_B/L^2 halves with h."""
    slow, blocks = _run_double_porosity(diffusivity=1e-12)
    band = blocks.block.boundary_mass
    exact = _run_single(capacity=0.75 + band)
    assert np.abs(slow.T.x.array - exact.T.x.array).max() < 1e-8
    bands = [BlockExchangeModel(0.5, 1.0, cells_per_side=n).block.boundary_mass for n in (8, 16)]
    assert bands[0] / bands[1] == pytest.approx(2.0, rel=0.15)
    fracture_only = _run_single(capacity=0.75)
    assert np.abs(slow.T.x.array - fracture_only.T.x.array).max() < 0.2  # the O(h) band


def test_block_exchange_needs_a_time_step_and_matching_initial_state():
    model = BlockExchangeModel(0.5, 0.2, cells_per_side=4)
    with pytest.raises(Exception, match="dt > 0"):
        model.evaluate({"T": np.ones(1)})
    msh = mesh.create_interval(MPI.COMM_SELF, 4, [0.0, 1.0])
    flux = MacroAxes(ConductivityModel(block_cell(4, 0.5), {"matrix": 1.0, "inclusion": 1e-9}))
    with pytest.raises(ValueError, match="initial temperature"):
        DoublePorosityHeat(msh, flux, model, fracture_capacity=0.75, initial_temperature=1.0)


# -- against the DNS -----------------------------------------------------------------------------
def _dns_strip(eps, conductivities, dt, steps, comm=MPI.COMM_WORLD, cells_per_period=8):
    dns = FineScaleHeat(
        comm,
        (1.0, eps),
        eps,
        cells_per_period,
        0.5,
        conductivities,
        (1.0, 1.0),
        dt,
        [(left, 1.0)],
    )
    for _ in range(steps):
        dns.step()
    return dns


def test_hmm_converges_to_the_dns_as_eps_falls():
    """Slow inclusions (k = 0.1), fixed contrast: the HMM with transient micro problems
    approaches the DNS at O(eps) (the corrector eps chi grad u it leaves out), and a window
    of one relaxation time leaves an error floor that a long smooth window removes."""
    dt, steps = 0.02, 5
    cell = block_cell(8, 0.5)
    msh = mesh.create_interval(MPI.COMM_WORLD, 32, [0.0, 1.0])
    solutions = {}
    for name, model in {
        "hmm": TransientConductivityModel(cell, SLOW_INCLUSIONS),
        "short": TransientConductivityModel(
            cell, SLOW_INCLUSIONS, window=1.0 * 0.1, kernel="uniform"
        ),
    }.items():
        heat = TransientHeat(msh, MacroAxes(model), dt=dt, dirichlet=[(left, 1.0)])
        for _ in range(steps):
            heat.step()
        assert heat.statistics.micro_solves == 1  # one simulation for the whole run
        solutions[name] = heat.T
    errors = {name: [] for name in solutions}
    for eps in (1 / 8, 1 / 16):
        dns = _dns_strip(eps, (1.0, 0.1), dt, steps)
        for name, u in solutions.items():
            errors[name].append(relative_l2_difference(dns.u, u))
        dns.destroy()
    assert 1.6 < errors["hmm"][0] / errors["hmm"][1] < 2.4
    assert errors["short"][0] / errors["short"][1] < 1.45  # the window's floor
    assert errors["short"][1] > 1.5 * errors["hmm"][1]


def test_double_porosity_memory_model_is_right_and_quasi_static_models_are_wrong():
    """Blocks with conductivity eps^2 D and a relaxation time (0.25) of the run's length:
    in the fractures the memory model approaches the DNS as eps falls; the quasi-static
    law (blocks in equilibrium) and the fracture-only law miss it by far more."""
    D, dt, steps = 0.05, 0.02, 6
    memory, _ = _run_double_porosity(D, dt, steps, n=32)
    quasi = _run_single(1.0, dt, steps, n=32)
    fracture = _run_single(0.75, dt, steps, n=32)
    errors = {"memory": [], "quasi": [], "fracture": []}
    for eps in (1 / 8, 1 / 16):
        dns = _dns_strip(eps, (1.0, eps**2 * D), dt, steps)
        region = dns.phase_indicator(block=False)
        for name, heat in (("memory", memory), ("quasi", quasi), ("fracture", fracture)):
            errors[name].append(relative_l2_difference(dns.u, heat.T, region))
        dns.destroy()
    assert errors["memory"][1] < errors["memory"][0]
    assert 3 * errors["memory"][1] < errors["quasi"][1] < errors["fracture"][1]


@pytest.mark.mpi
def test_double_porosity_and_dns_do_not_depend_on_the_number_of_ranks():
    """Block histories are keyed by input cell numbering: the memory model on all ranks
    equals the serial one; so does the DNS (MUMPS, direct)."""
    probes = [[0.1, 0.0], [0.3, 0.0], [0.6, 0.0]]
    heat, _ = _run_double_porosity(0.05, steps=3)
    dns = _dns_strip(1 / 8, (1.0, 0.05 / 64), 0.02, 3)
    parallel = point_values(heat.T, [[p[0]] for p in probes])
    parallel_dns = point_values(dns.u, probes)
    dns.destroy()
    if MPI.COMM_WORLD.rank == 0:
        serial, _ = _run_double_porosity(0.05, steps=3, comm=MPI.COMM_SELF)
        serial_dns = _dns_strip(1 / 8, (1.0, 0.05 / 64), 0.02, 3, comm=MPI.COMM_SELF)
        assert np.allclose(point_values(serial.T, [[p[0]] for p in probes]), parallel, atol=1e-12)
        assert np.allclose(point_values(serial_dns.u, probes), parallel_dns, atol=1e-11)
        serial_dns.destroy()
