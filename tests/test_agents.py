"""Agent-based tissue patches: the walkers, their mean-field limit, the macro scheme, Mesa.

References: the closed-form expectation of the patch estimators, the discrete logistic map
(the mean-field limit of a uniform box), the lumped-P1 scheme written out in NumPy, the
Fisher–KPP speed 2 sqrt(D r) with Bramson's logarithmic delay, and the full agent
simulation (DNS) of the same domain. Stochastic tolerances come from standard errors; each
stochastic test was run over 20 seeds (``seed`` below) before it was trusted.
"""

import math

import dolfinx
import numpy as np
import pytest
import ufl
from mpi4py import MPI
from scipy import stats

from hmm_fem.macro import PatchReactionDiffusion
from hmm_fem.micro import MicroModel, MicroResponse
from hmm_fem.micro.agents import AgentPatchModel, LatticeDNS, LatticeWalkers


class FisherKPPLaw(MicroModel):
    """The mean-field law ``R = r u (1 - u)``, ``J = -D grad u`` (deterministic, per point)."""

    def __init__(self, dim, D=1.0, r=1.0):
        self.inputs = {"u": (), "grad_u": (dim,)}
        self.output_shape = (1 + dim,)
        self.D, self.r, self.dim = D, r, dim

    def micro_state(self, inputs, parameters):
        return np.column_stack([inputs["u"], inputs["grad_u"]])

    def solve(self, state, context):
        return {
            "value": np.concatenate([[self.r * state[0] * (1 - state[0])], -self.D * state[1:]])
        }

    def respond(self, solutions, inputs, parameters):
        n = len(solutions["value"])
        return MicroResponse(
            solutions["value"],
            {"u": np.zeros((n, 1 + self.dim)), "grad_u": np.zeros((n, 1 + self.dim, self.dim))},
        )


def fitted_front_speed(times, positions, window, lam):
    """Least-squares speed of ``x(t) + 3/(2 lam) ln t`` over ``window`` (Bramson's delay)."""
    times, positions = np.asarray(times), np.asarray(positions)
    keep = (times >= window[0]) & (times <= window[1])
    return np.polyfit(times[keep], positions[keep] + 1.5 / lam * np.log(times[keep]), 1)[0]


# -- the micro model ------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 2])
def test_patch_estimates_have_the_closed_form_mean(dim):
    # One micro step: the estimators are the expected births and hops given the lifted
    # Poisson configuration, so their means are exact: E[n (1 - n/K)] / K = u_x (1 - u_x)
    # - u_x / K for n ~ Poisson(K u_x) (no site exceeds K here), averaged over the core
    # sites' profile values u_x = u + g.x, and -D g for the flux (the sum over a row of
    # bonds telescopes to the two frame sites).
    K, a, m = 1000.0, 0.05, 3
    walkers = LatticeWalkers(dim, a, 2.0, 1.5, K, core_sites=m, burst_time=1e-9, replicas=2)
    assert walkers.burst_steps == 1
    n = 3000
    u = np.full(n, 0.4)
    g = np.tile(np.linspace(-0.6, 0.3, dim), (n, 1))
    estimate = walkers.run_patches(u, g, np.random.default_rng(7))
    side = (np.arange(1, m + 1) - (m + 1) / 2) * a
    x = np.stack(np.meshgrid(*([side] * dim), indexing="ij"), -1).reshape(-1, dim)
    ux = 0.4 + x @ g[0]
    expected_rate = 1.5 * np.mean(ux * (1 - ux) - ux / K)
    rate_se = estimate.rate.std(ddof=1) / math.sqrt(n)
    assert abs(estimate.rate.mean() - expected_rate) < 4 * rate_se
    flux_se = estimate.flux.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(estimate.flux.mean(axis=0) + 2.0 * g[0]) < 4 * flux_se)
    # The standard errors of single patches (spread of 2 replicas) are unbiased in variance.
    assert estimate.rate_error.shape == (n,) and estimate.flux_error.shape == (n, dim)
    ratio = np.mean(estimate.rate_error**2) / estimate.rate.var(ddof=1)
    assert 0.85 < ratio < 1.15  # mean of n chi2(1) / 1: sd sqrt(2/n) ~ 0.026


def test_uniform_box_follows_the_discrete_logistic_map():
    # A uniform density stays uniform under hops with reflecting walls, and its mean obeys
    # the mean-field map c' = c + r tau c (1 - c) up to the O(1/K) fluctuation correction.
    walkers = LatticeWalkers(1, 0.05, 1.0, 1.0, 1e5)
    rng = np.random.default_rng(3)
    dns = LatticeDNS(walkers, [2.0], lambda x: np.full(len(x), 0.05), rng, replicas=16)
    c = 0.05
    steps = round(2.0 / walkers.time_step)
    for _ in range(steps):
        c += walkers.proliferation_rate * walkers.time_step * c * (1 - c)
    dns.run(2.0)
    mass = dns.mass() / 2.0
    se = mass.std(ddof=1) / 4
    assert abs(mass.mean() - c) < 4 * se + 2 * c / walkers.capacity
    assert abs(dns.time - steps * walkers.time_step) < 1e-12


# -- the macro scheme -----------------------------------------------------------------------------
@pytest.mark.parametrize("scheme, reaction", [("heun", "per_capita"), ("euler", "midpoint")])
def test_macro_scheme_is_the_lumped_p1_scheme(scheme, reaction):
    # With the mean-field law at the patches (through the Dispatcher: a model without
    # solve_batch), the macro step is the lumped-P1 (finite-difference) scheme with the
    # flux at the cell midpoints and the reaction either per capita at the nodes or by the
    # midpoint rule, stepped by Heun or forward Euler: written out here in NumPy.
    n, L, dt = 20, 10.0, 0.05
    mesh = dolfinx.mesh.create_interval(MPI.COMM_SELF, n, [0.0, L])
    initial = lambda x: np.exp(-((x[0] - 3.0) ** 2))  # noqa: E731
    problem = PatchReactionDiffusion(
        mesh,
        FisherKPPLaw(1),
        dt=dt,
        initial_density=initial,
        scheme=scheme,
        reaction=reaction,
        diffusivity=1.0,
        state_resolution=0,
    )
    assert problem.covered_fraction is None
    assert problem.stable_time_step == pytest.approx((L / n) ** 2 / 2, rel=1e-12)
    h = L / n
    x = np.linspace(0, L, n + 1)
    mass = np.full(n + 1, h)
    mass[[0, -1]] = h / 2

    def rate_of_change(u):
        uc, g = (u[1:] + u[:-1]) / 2, np.diff(u) / h
        R, J = uc * (1 - uc), -g
        b = np.zeros(n + 1)
        b[:-1] -= J
        b[1:] += J
        if reaction == "midpoint":
            b[:-1] += R * h / 2
            b[1:] += R * h / 2
        else:
            per_capita = np.zeros(n + 1)
            per_capita[:-1] += R / uc * h / 2
            per_capita[1:] += R / uc * h / 2
            b += per_capita * u
        return b / mass

    u = initial(x[None, :])
    for _ in range(10):
        k1 = rate_of_change(u)
        u = u + dt * k1 if scheme == "euler" else u + dt / 2 * (k1 + rate_of_change(u + dt * k1))
    problem.run(10 * dt)
    coordinates = problem.V.tabulate_dof_coordinates()[:, 0]
    assert np.allclose(problem.u.x.array, np.interp(coordinates, x, u), rtol=0, atol=1e-13)
    assert problem.mass() == pytest.approx(mass @ u, rel=1e-12)


@pytest.mark.parametrize("seed", [0])
def test_invasion_front_moves_at_the_fisher_kpp_speed(seed):
    # 1D front into u = 0 from agent patches (K = 1e6 per site: the Brunet-Derrida slowing
    # of a front of discrete agents, ~ pi^2 / ln^2 N, is then below 1 %). The front position
    # is the mass int u dx (u = 1 behind the front); its speed is fitted over t in [8, 22]
    # after adding Bramson's logarithmic delay (3 / 2 lam) ln t, lam = sqrt(r / D). On a
    # fine solution of the PDE this fit gives -0.7 % (the later terms of the expansion);
    # the same macro scheme (h = 0.5, Heun, dt = 0.04) with the exact mean-field law at
    # the patches gives 1.9987 (-0.07 %). Patches: 2 + 2 sites of 0.025 in every cell of
    # 0.5: 20 % of the domain. 20 seeds: 1.9993-2.0142 (-0.04 % to +0.71 %).
    D, r = 1.0, 1.0
    walkers = LatticeWalkers(1, 0.025, D, r, 1e6, core_sites=2, burst_time=0.00125)
    mesh = dolfinx.mesh.create_interval(MPI.COMM_WORLD, 100, [0.0, 50.0])
    problem = PatchReactionDiffusion(
        mesh,
        AgentPatchModel(walkers, seed=seed),
        dt=0.04,
        initial_density=lambda x: (x[0] < 2.0).astype(float),
    )
    assert problem.covered_fraction == pytest.approx(0.2)
    times, positions = [], []
    problem.run(22.0, lambda p: (times.append(p.time), positions.append(p.mass())))
    speed = fitted_front_speed(times, positions, (8.0, 22.0), math.sqrt(r / D))
    assert abs(speed / walkers.front_speed() - 1) < 0.03


@pytest.mark.parametrize("seed", [0])
def test_density_profile_agrees_with_the_full_agent_simulation(seed):
    # The DNS: the same walkers on every site of [0, 5] (200 sites), 12 replicas; the patch
    # scheme: 12 runs with patches covering 20 %. At t = 0.8 the DNS density at every macro
    # node (the mean of the 4 sites nearest to it: a box of 0.1, whose bias w^2 u''/24 ~
    # 1e-4 is far below the noise; a box of a whole cell, h^2 u''/24 ~ 3e-3, was not) and
    # the patch scheme's nodal values are compared by Welch's t test at every node,
    # family-wise level 1e-3 (Bonferroni over the 11 nodes). 20 seeds: smallest p-value
    # 1.2e-3 (the bound is 9.1e-5).
    K, h, length, t_end, runs = 1000.0, 0.5, 5.0, 0.8, 12
    walkers = LatticeWalkers(1, 0.025, 1.0, 1.0, K, core_sites=2, burst_time=0.00125)
    initial = lambda x: 1 / (1 + np.exp(2 * (x[0] - 2.0)))  # noqa: E731
    dns = LatticeDNS(
        walkers, [length], lambda p: initial(p.T), np.random.default_rng([seed, 1]), runs
    )
    dns.run(t_end)
    nodes = np.linspace(0, length, round(length / h) + 1)
    sites = dns.positions[:, 0]
    nearest = np.argsort(np.abs(sites[None, :] - nodes[:, None]), axis=1)[:, :4]
    boxes = np.zeros((len(nodes), len(sites)))
    np.put_along_axis(boxes, nearest, 1.0, axis=1)
    reference = dns.density() @ boxes.T / boxes.sum(axis=1)  # (runs, nodes)
    mesh = dolfinx.mesh.create_interval(MPI.COMM_SELF, len(nodes) - 1, [0.0, length])
    patch = []
    for run in range(runs):
        problem = PatchReactionDiffusion(
            mesh,
            AgentPatchModel(walkers, seed=1000 * seed + run),
            dt=0.04,
            initial_density=initial,
        )
        problem.run(t_end)
        order = np.argsort(problem.V.tabulate_dof_coordinates()[:, 0])
        patch.append(problem.u.x.array[order])
    assert problem.covered_fraction == pytest.approx(0.2)
    result = stats.ttest_ind(np.array(patch), reference, axis=0, equal_var=False)
    assert result.pvalue.min() > 1e-3 / len(nodes)


# -- Mesa ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0])
def test_mesa_walkers_give_the_same_growth_rate(seed):
    # The same walker model written with Mesa (one agent object per walker), run through the
    # adapter (counted births and crossings), against the vectorised walkers (expected
    # births and hops): same growth rate and flux within 4 standard errors (from the
    # spread over patches). K = 20 agents per site: the crowding makes the growth rate
    # 10 % lower than the mean-field r u (1 - u) at u = 0.5, which both see.
    mesa_adapter = pytest.importorskip("hmm_fem.micro.agents.mesa_adapter")
    walkers = LatticeWalkers(
        1, 0.1, 1.0, 20.0, 20, core_sites=4, burst_time=20 * 0.0025, replicas=2
    )
    assert walkers.burst_steps == 20
    mesa = mesa_adapter.MesaWalkers(walkers)
    n = 30
    u = np.full(n, 0.5)
    g = np.full((n, 1), -0.8)
    rng = np.random.default_rng([seed, 2])
    counted = mesa.run_patches(u, g, rng)
    expected = walkers.run_patches(np.full(20 * n, 0.5), np.full((20 * n, 1), -0.8), rng)
    for a, b in ((counted.rate, expected.rate), (counted.flux[:, 0], expected.flux[:, 0])):
        se = math.hypot(a.std(ddof=1) / math.sqrt(len(a)), b.std(ddof=1) / math.sqrt(len(b)))
        assert abs(a.mean() - b.mean()) < 4 * se
    mean_field = 20.0 * 0.5 * 0.5
    assert abs(expected.rate.mean() - mean_field) > 0.05 * mean_field  # crowding is seen


def test_mesa_model_behind_the_micro_seam():
    mesa_adapter = pytest.importorskip("hmm_fem.micro.agents.mesa_adapter")
    walkers = LatticeWalkers(2, 0.1, 1.0, 1.0, 5, core_sites=2, burst_time=0.01)
    model = AgentPatchModel(mesa_adapter.MesaWalkers(walkers), seed=4)
    inputs = {"u": np.array([0.2, 0.6]), "grad_u": np.array([[0.1, 0.0], [0.0, -0.2]])}
    response = model.evaluate(inputs)
    assert response.value.shape == (2, 3) and response.standard_error.shape == (2, 3)
    assert np.allclose(response.derivatives["u"][:, 0], 1 - 2 * inputs["u"])
    assert np.allclose(response.derivatives["grad_u"][:, 1:], -np.eye(2))
    again = model.evaluate(inputs)  # the same context: the same stream, the same agents
    assert np.array_equal(again.value, response.value)
    assert model.site_updates > 0


# -- parallel ------------------------------------------------------------------------------------
def _gathered(problem):
    comm = problem.mesh.comm
    owned = problem.V.dofmap.index_map.size_local
    x = problem.V.tabulate_dof_coordinates()[:owned, :2]
    values = problem.u.x.array[:owned]
    x = np.round(np.concatenate(comm.allgather(x)), 9)  # exact ties for the sort
    values = np.concatenate(comm.allgather(values))
    order = np.lexsort(x.T[::-1])
    return x[order], values[order]


@pytest.mark.mpi
@pytest.mark.parametrize("cell", ["interval", "triangle"])
def test_seeded_patch_run_is_the_same_on_any_number_of_ranks(cell):
    walkers_1d = LatticeWalkers(1, 0.025, 1.0, 1.0, 1e4, core_sites=2, burst_time=0.00125)
    walkers_2d = LatticeWalkers(2, 0.05, 1.0, 1.0, 1e4, core_sites=1, burst_time=0.002)

    def run(comm):
        if cell == "interval":
            mesh = dolfinx.mesh.create_interval(comm, 24, [0.0, 12.0])
            walkers = walkers_1d
        else:
            kind = getattr(dolfinx.mesh.CellType, cell)
            mesh = dolfinx.mesh.create_rectangle(comm, [[0, 0], [6, 2]], [12, 4], kind)
            walkers = walkers_2d
        problem = PatchReactionDiffusion(
            mesh,
            AgentPatchModel(walkers, seed=11),
            dt=0.02,
            scheme="heun",
            block_size=7,
            initial_density=lambda x: (x[0] < 2.2).astype(float),  # no node on the step
        )
        problem.run(0.2)
        return _gathered(problem), problem.mass()

    (x, values), mass = run(MPI.COMM_WORLD)
    (x_serial, values_serial), mass_serial = run(MPI.COMM_SELF)
    assert np.allclose(x, x_serial)
    assert np.allclose(values, values_serial, rtol=0, atol=1e-12)
    assert mass == pytest.approx(mass_serial, rel=1e-12)
    assert values.max() > 0.5 and np.any((values > 1e-6) & (values < 0.5))  # a front


# -- bad input -------------------------------------------------------------------------------------
def test_bad_inputs_are_refused_with_clear_errors():
    with pytest.raises(ValueError, match="dim must be 1 or 2"):
        LatticeWalkers(3, 0.1, 1.0, 1.0, 10)
    with pytest.raises(ValueError, match="capacity must be a positive"):
        LatticeWalkers(1, 0.1, 1.0, 1.0, -5)
    with pytest.raises(ValueError, match="hop_probability"):
        LatticeWalkers(1, 0.1, 1.0, 1.0, 10, hop_probability=1.5)
    with pytest.raises(ValueError, match="replicas must be an integer >= 2"):
        LatticeWalkers(1, 0.1, 1.0, 1.0, 10, replicas=1)
    with pytest.raises(ValueError, match="too long for the division rate"):
        LatticeWalkers(1, 1.0, 1.0, 1.0, 10)
    walkers = LatticeWalkers(2, 0.1, 1.0, 1.0, 10)
    with pytest.raises(ValueError, match=r"gradient must have shape \(n, 2\)"):
        walkers.run_patches([0.5, 0.5], [0.1, 0.2], np.random.default_rng())
    with pytest.raises(ValueError, match="must be finite"):
        walkers.run_patches([np.nan], [[0.1, 0.2]], np.random.default_rng())
    with pytest.raises(ValueError, match="whole numbers"):
        LatticeDNS(walkers, [1.05, 1.0], lambda x: np.zeros(len(x)), np.random.default_rng())
    with pytest.raises(TypeError, match="not a patch simulator"):
        AgentPatchModel(object())

    mesh = dolfinx.mesh.create_interval(MPI.COMM_SELF, 10, [0.0, 5.0])
    model = AgentPatchModel(LatticeWalkers(1, 0.025, 1.0, 1.0, 100, core_sites=2))
    with pytest.raises(ValueError, match="exceeds the stability bound"):
        PatchReactionDiffusion(mesh, model, dt=0.2)
    with pytest.raises(ValueError, match="scheme must be"):
        PatchReactionDiffusion(mesh, model, dt=0.01, scheme="rk4")
    with pytest.raises(ValueError, match="larger than the smallest cell"):
        big = AgentPatchModel(LatticeWalkers(1, 0.2, 1.0, 1.0, 100, core_sites=2))
        PatchReactionDiffusion(mesh, big, dt=0.01)
    with pytest.raises(ValueError, match="inputs"):
        PatchReactionDiffusion(mesh, FisherKPPLaw(2), dt=0.01)
    quadrilaterals = dolfinx.mesh.create_unit_square(
        MPI.COMM_SELF, 4, 4, dolfinx.mesh.CellType.quadrilateral
    )
    with pytest.raises(ValueError, match="hourglass"):
        PatchReactionDiffusion(quadrilaterals, FisherKPPLaw(2), dt=0.01, diffusivity=1.0)
    with pytest.warns(RuntimeWarning, match="stability of the explicit step is not checked"):
        PatchReactionDiffusion(mesh, FisherKPPLaw(1), dt=0.01)
    mesa_adapter = pytest.importorskip("hmm_fem.micro.agents.mesa_adapter")
    with pytest.raises(TypeError, match="factory must be callable"):
        mesa_adapter.MesaPatches(None, dim=1, spacing=0.1, capacity=5, time_step=0.01)


@pytest.mark.mpi
def test_no_flux_boundary_conserves_agents_without_growth():
    # r -> 0 is not allowed (rates are positive), so use the mean-field law with r = 0: the
    # closed boundary conserves the mass exactly (up to round-off), in 2D on triangles.
    mesh = dolfinx.mesh.create_rectangle(
        MPI.COMM_WORLD, [[0, 0], [4, 2]], [8, 4], dolfinx.mesh.CellType.triangle
    )
    problem = PatchReactionDiffusion(
        mesh,
        FisherKPPLaw(2, r=0.0),
        dt=0.02,
        diffusivity=1.0,
        initial_density=lambda x: np.exp(-((x[0] - 1) ** 2) - (x[1] - 1) ** 2),
    )
    before = problem.mass()
    problem.run(0.5)
    assert problem.mass() == pytest.approx(before, rel=1e-12)
    exact = dolfinx.fem.assemble_scalar(dolfinx.fem.form(problem.u * ufl.dx))
    assert mesh.comm.allreduce(exact) == pytest.approx(problem.mass(), rel=1e-12)
