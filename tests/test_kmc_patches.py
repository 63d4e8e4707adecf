"""KMC patches on a catalytic surface and the macro coverage problem they drive.

References: the exact mean of the first events after an independent-site lift (the
mean-field reaction rates and the lattice-gas hop flux at the lifted coverages), the
symmetric exclusion process (flux exactly ``-D grad theta``), a fine method-of-lines solve
of the mean-field reaction-diffusion equations (the front speed of the lumped-P1 scheme),
1 = 2 ranks, and bad inputs. Stochastic tolerances are 4 standard errors of the estimator;
each stochastic test was run over 20 seeds before it was trusted (``seed`` below).
"""

import dolfinx
import numpy as np
import pytest
from mpi4py import MPI
from scipy.integrate import solve_ivp

from hmm_fem.macro import SurfaceReactionDiffusion
from hmm_fem.micro.kmc import LatticeModel, zgb
from hmm_fem.micro.kmc.patches import (
    KMCPatches,
    front_position,
    reservoir_model,
    with_hopping,
)


def hops_only(D_co, D_o):
    return LatticeModel(["*", "CO", "O"], {"CO_diffusion": ("CO * -> * CO", D_co),
                                           "O_diffusion": ("O * -> * O", D_o)})


def test_reservoir_model_marks_every_pair_event_on_every_side():
    model = zgb(0.5, reaction_rate=2.0, diffusion_rate=10.0)
    marked, table = reservoir_model(model, ("x-", "x+"))
    # Per side: O2 adsorption (ghost empty), reaction (ghost O or ghost CO), hop (ghost
    # empty or ghost CO): 5 variants; plus the 4 events of the model.
    assert len(marked.events) == 4 + 2 * 5
    assert len(marked.species) == 3 * 3
    names = marked.event_names
    co, o = 0, 1  # columns of delta: *, CO, O -> CO is 1, O is 2
    leave = names.index("CO_diffusion@x-#0")  # CO inside, empty ghost: CO leaves
    enter = names.index("CO_diffusion@x-#1")
    assert marked.events[leave].reaction == "CO *@x- -> * *@x-"
    assert table["delta"][leave, co + 1] == -1 and table["delta"][enter, co + 1] == 1
    assert table["transport"][leave] and table["transport"][enter]
    reaction = names.index("reaction@x+#1")  # O inside, CO in the ghost layer
    assert table["delta"][reaction, o + 1] == -1 and not table["transport"][reaction]
    assert table["side"][reaction] == 1
    o2 = names.index("O2_adsorption@x-#0")
    assert marked.events[o2].rate == pytest.approx(0.25)
    assert table["delta"][o2].tolist() == [-1, 0, 1]  # one O inside, the ghost's discarded


@pytest.mark.parametrize("seed", [5])
def test_rates_after_a_lift_are_the_mean_field_rates(seed):
    # Sites drawn independently: the expected rate of every event at t = 0 is exactly its
    # mean-field rate at the lifted coverages; over dt = 0.004 (rates ~ 1) they drift by
    # ~0.2 %, far below the 4 sigma tolerance (~5 %).
    y, k, D = 0.45, 1.0, 10.0
    theta = np.array([0.2, 0.3])
    B = 3000
    patches = KMCPatches(zgb(y, reaction_rate=k, diffusion_rate=D), 8, lateral=8, dim=1,
                         ids=range(B), seed=seed)
    out = patches.advance(np.tile(theta, (B, 1)), np.zeros((B, 2, 1)), 0.004, step=0)
    co, o = theta
    empty = 1 - co - o
    expected = [y * empty - 4 * k * co * o, 2 * (1 - y) * empty**2 - 4 * k * co * o]
    mean = out.rate.mean(axis=0)
    error = out.rate.std(axis=0, ddof=1) / np.sqrt(B)
    assert np.all(np.abs(mean - expected) < 4 * error), (mean, expected, error)
    assert np.all(np.abs(out.flux.mean(axis=0)[:, 0]) < 4 * out.flux.std(axis=0)[:, 0]
                  / np.sqrt(B))


@pytest.mark.parametrize("seed", [5])
def test_hop_flux_is_the_lattice_gas_flux(seed):
    # Independent sites on a linear profile: the expected hop flux at t = 0 is exactly
    # -D ((1 - theta_O) grad theta_CO + theta_CO grad theta_O) for CO (and the same with
    # the species swapped for O), measured here by the displacement of the hops.
    D_co, D_o = 10.0, 4.0
    theta = np.array([0.3, 0.2])
    grad = np.array([[0.02], [-0.01]])
    B = 400
    patches = KMCPatches(hops_only(D_co, D_o), 8, lateral=16, dim=1, ids=range(B),
                         seed=seed)
    out = patches.advance(np.tile(theta, (B, 1)), np.tile(grad, (B, 1, 1)), 0.01, step=0)
    (co, o), (g_co, g_o) = theta, grad[:, 0]
    expected = [-D_co * ((1 - o) * g_co + co * g_o), -D_o * ((1 - co) * g_o + o * g_co)]
    mean = out.flux[:, :, 0].mean(axis=0)
    error = out.flux[:, :, 0].std(axis=0, ddof=1) / np.sqrt(B)
    assert np.all(np.abs(mean - expected) < 4 * error), (mean, expected, error)
    assert np.allclose(out.rate, 0.0)  # hops are transport, not reactions


@pytest.mark.parametrize("seed", [5])
def test_persistent_patches_carry_the_exclusion_flux(seed):
    # The symmetric exclusion process: J = -D grad theta exactly, at every density and in
    # the steady state of persistent patches framed at a linear profile (the frames are
    # re-drawn every step, the patches keep their particles).
    D = 20.0
    B = 100
    patches = KMCPatches(hops_only(D, 0.0), 8, lateral=16, dim=1, ids=range(B), seed=seed)
    theta = np.tile([0.4, 0.0], (B, 1))
    grad = np.zeros((B, 2, 1))
    grad[:, 0, 0] = 0.02
    fluxes, errors = [], []
    for step in range(12):
        out = patches.advance(theta, grad, 0.1, step=step)
        if step >= 2:
            fluxes.append(out.flux[:, 0, 0].mean())
            errors.append(out.flux_error[:, 0, 0].mean() / np.sqrt(B))
    error = np.sqrt(np.sum(np.square(errors))) / len(errors)
    assert abs(np.mean(fluxes) - (-D * 0.02)) < 4 * error
    assert patches.constrained_sites > 0  # the patches followed the macro coverage


def _mol_front_speed(model, length, initial_step, times, D_co, D_o, level):
    """Method of lines, dx = 1/2 site: the mean-field equations in conservative form."""
    from scipy.sparse import bmat, diags

    dx = 0.5
    x = np.arange(dx / 2, length, dx)
    n = len(x)
    y = model.events[model.event_index("CO_adsorption")].rate
    k = model.events[model.event_index("reaction")].rate

    def rhs(t, u):
        co, o = u[:n], u[n:]
        e = 1 - co - o
        # Bond fluxes between cells (face averages), zero at the closed ends.
        cf, of, ef = (co[1:] + co[:-1]) / 2, (o[1:] + o[:-1]) / 2, (e[1:] + e[:-1]) / 2
        dco, do, de = np.diff(co) / dx, np.diff(o) / dx, np.diff(e) / dx
        j_co = np.concatenate([[0], -D_co * (ef * dco - cf * de), [0]])
        j_o = np.concatenate([[0], -D_o * (ef * do - of * de), [0]])
        reaction = 4 * k * co * o
        return np.concatenate([
            y * e - reaction - np.diff(j_co) / dx,
            2 * (1 - y) * e**2 - reaction - np.diff(j_o) / dx,
        ])

    u0 = np.concatenate([(x > initial_step).astype(float), np.zeros(n)])
    band = diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n))
    sparsity = bmat([[band, band], [band, band]])
    solution = solve_ivp(rhs, (0, times[-1]), u0, t_eval=times, method="BDF", rtol=1e-7,
                         atol=1e-9, jac_sparsity=sparsity)
    positions = [front_position(x, solution.y[:n, j], level) for j in range(len(times))]
    return positions


def test_mean_field_front_speed_agrees_with_a_fine_method_of_lines_solve():
    # The lumped-P1 scheme (h = 4 sites, forward Euler dt = 0.1) with the mean-field law:
    # its front moves at the speed of the same equations solved finely (dx = 1/2, BDF).
    D_co, D_o = 20.0, 20.0
    model = with_hopping(zgb(0.36, reaction_rate=1.0, diffusion_rate=D_co), O=D_o)
    length, step, level = 160.0, 100.0, 0.5
    times = np.arange(2.0, 31.0, 2.0)
    mesh = dolfinx.mesh.create_interval(MPI.COMM_WORLD, 40, [0.0, length])
    problem = SurfaceReactionDiffusion(
        mesh, model, dt=0.1, micro="mean_field",
        initial_coverages={"CO": lambda x: (x[0] > step).astype(float)})
    positions = []
    for _ in times:
        problem.run(2.0)
        positions.append(problem.front_position("CO", level))
    reference = _mol_front_speed(model, length, step, times, D_co, D_o, level)
    late = times >= 10
    speed = np.polyfit(times[late], np.array(positions)[late], 1)[0]
    speed_ref = np.polyfit(times[late], np.array(reference)[late], 1)[0]
    assert speed_ref > 0.3  # the reactive state invades the CO-covered one
    assert speed == pytest.approx(speed_ref, rel=0.02)


@pytest.mark.mpi
@pytest.mark.parametrize("cell", ["interval", "triangle"])
def test_seeded_patch_run_is_the_same_on_any_number_of_ranks(cell):
    model = with_hopping(zgb(0.4, reaction_rate=1.0, diffusion_rate=4.0), O=4.0)

    def run(comm):
        if cell == "interval":
            mesh = dolfinx.mesh.create_interval(comm, 10, [0.0, 60.0])
            width = 4
        else:
            mesh = dolfinx.mesh.create_rectangle(comm, [[0, 0], [60, 12]], [5, 1],
                                                 dolfinx.mesh.CellType.triangle)
            width = 6
        problem = SurfaceReactionDiffusion(
            mesh, model, dt=0.1, patch_width=width, patch_lateral=4, seed=3,
            initial_coverages={"CO": lambda x: (x[0] > 31.0).astype(float), "O": 0.1})
        problem.run(0.5)
        constrained = comm.allreduce(problem.patches.constrained_sites)
        return problem.nodal_values(), constrained

    (x, values), constrained = run(MPI.COMM_WORLD)
    (x_serial, values_serial), constrained_serial = run(MPI.COMM_SELF)
    assert np.allclose(x, x_serial)
    assert np.allclose(values, values_serial, rtol=0, atol=1e-12)
    assert constrained == constrained_serial
    assert values[:, 0].max() > 0.9 and values[:, 0].min() < 0.5  # a front


def test_bad_inputs_are_refused_with_clear_errors():
    model = zgb(0.5, reaction_rate=1.0, diffusion_rate=10.0)
    with pytest.raises(ValueError, match="dim must be 1"):
        KMCPatches(model, 8, dim=3)
    with pytest.raises(ValueError, match="width must be an integer >= 2"):
        KMCPatches(model, 1)
    with pytest.raises(ValueError, match="frame must be"):
        KMCPatches(model, 4, frame="mirror")
    with pytest.raises(ValueError, match="relaxation must be in"):
        KMCPatches(model, 4, relaxation=2.0)
    patches = KMCPatches(model, 4, ids=[0, 1])
    with pytest.raises(ValueError, match=r"expected coverages \(2, 2\)"):
        patches.advance(np.zeros((3, 2)), np.zeros((3, 2, 1)), 0.1, step=0)
    with pytest.raises(ValueError, match="dt must be positive"):
        patches.advance(np.zeros((2, 2)), np.zeros((2, 2, 1)), 0.0, step=0)
    with pytest.raises(ValueError, match="does not hop"):
        with_hopping(model, **{"*": 1.0})
    with pytest.raises(ValueError, match="x and values"):
        front_position([0.0, 1.0], [1.0], 0.5)
    mesh = dolfinx.mesh.create_interval(MPI.COMM_WORLD, 10, [0.0, 40.0])
    with pytest.raises(ValueError, match="exceeds the stability bound"):
        SurfaceReactionDiffusion(mesh, model, dt=1.0, patch_width=4)
    with pytest.raises(ValueError, match="larger than the smallest cell"):
        SurfaceReactionDiffusion(mesh, model, dt=0.1, patch_width=8)
    with pytest.raises(ValueError, match="unknown or vacancy species"):
        SurfaceReactionDiffusion(mesh, model, dt=0.1, patch_width=4,
                                 initial_coverages={"CO2": 0.5})
    with pytest.raises(ValueError, match="micro must be"):
        SurfaceReactionDiffusion(mesh, model, dt=0.1, patch_width=4, micro="exact")
    square = dolfinx.mesh.create_unit_square(MPI.COMM_WORLD, 2, 2,
                                             dolfinx.mesh.CellType.quadrilateral)
    with pytest.raises(ValueError, match="unsupported cell type"):
        SurfaceReactionDiffusion(square, model, dt=0.1, patch_width=2)
