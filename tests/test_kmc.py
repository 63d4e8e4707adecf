"""Lattice kinetic Monte Carlo: the engine against exact results, the ZGB model, seeds, errors.

Stochastic tests are seeded; their tolerances are 4 standard errors (stated at each test).
``HMM_KMC_SEEDS=20`` runs every stochastic test over 20 seeds (how they were checked).
"""

import math
import os

import numpy as np
import pytest
from mpi4py import MPI

from hmm_fem.micro.kmc import KMC, LatticeModel, rank_block, zgb
from hmm_fem.micro.kmc.coarse import (
    absorbing_multiplier,
    coverage_stepper,
    coverage_stepper_family,
    mean_field_multipliers,
    mean_field_steady_state,
    steady_coverages,
    zgb_mean_field_fold,
    zgb_mean_field_states,
)

SEEDS = list(range(int(os.environ.get("HMM_KMC_SEEDS", "1"))))


def langmuir(ka=2.0, kd=1.0):
    return LatticeModel(["*", "A"], {"ads": ("* -> A", ka), "des": ("A -> *", kd)})


# -- the rejection-free engine against exact results ---------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_langmuir_coverage_is_binomial_with_the_exact_mean(seed):
    # Independent sites: each is a two-state Markov chain, so the number of occupied sites
    # at time t is Binomial(N, p(t)) with p(t) = ka/(ka+kd) (1 - exp(-(ka+kd) t)), exactly.
    ka, kd, B, N = 2.0, 1.0, 8, 32 * 32
    sim = KMC(langmuir(ka, kd), (32, 32), lattices=B, seed=seed)
    for t in (0.2, 0.5, 6.0):  # transient and (to 1e-7) stationary: the Langmuir isotherm
        sim.run(until=t)
        p = ka / (ka + kd) * (1 - math.exp(-(ka + kd) * t))
        theta = sim.coverages("A")[:, 0]
        assert np.all(sim.time == t)
        assert abs(theta.mean() - p) < 4 * math.sqrt(p * (1 - p) / (N * B))


@pytest.mark.parametrize("seed", SEEDS)
def test_waiting_times_are_exponential_with_the_total_rate(seed):
    # One event at a time: the waiting time times the total rate before it is Exp(1).
    from scipy import stats

    sim = KMC(langmuir(), (8, 8), seed=seed)
    n = 1500
    scaled = np.empty(n)
    for k in range(n):
        R, t0 = sim.total_rate()[0], sim.time[0]
        assert sim.run(max_events=1)[0] == 1
        scaled[k] = (sim.time[0] - t0) * R
    assert abs(scaled.mean() - 1) < 4 / math.sqrt(n)  # Exp(1): mean 1, sd 1
    assert stats.kstest(scaled, "expon").statistic < 1.95 / math.sqrt(n)  # KS at 0.1 %


@pytest.mark.parametrize("seed", SEEDS)
def test_dimer_adsorption_on_a_chain_follows_flory(seed):
    # Random sequential adsorption of dimers at rate 1 per empty pair on a chain:
    # theta(t) = 1 - exp(-2 (1 - exp(-t))) (Flory 1939; Evans, Rev. Mod. Phys. 65, 1281).
    model = LatticeModel(["*", "A"], {"ads": ("* * -> A A", 1.0)})
    sim = KMC(model, 2000, lattices=8, seed=seed)
    for t in (0.5, 1.5):
        sim.run(until=t)
        theta = sim.coverages("A")[:, 0]
        exact = 1 - math.exp(-2 * (1 - math.exp(-t)))
        assert abs(theta.mean() - exact) < 4 * theta.std(ddof=1) / math.sqrt(len(theta))


@pytest.mark.parametrize("seed", SEEDS)
def test_dimer_adsorption_on_the_square_lattice_jams_at_the_published_coverage(seed):
    # Jamming coverage of random sequential dimer adsorption on the square lattice:
    # 0.906820(2) (Wang & Pandey 1996; Evans 1993 quotes 0.9068). By t = 30 all but
    # exp(-30) of the isolated empty pairs are filled.
    model = LatticeModel(["*", "A"], {"ads": ("* * -> A A", 1.0)})
    sim = KMC(model, (48, 48), lattices=8, seed=seed)
    sim.run(30.0)
    theta = sim.coverages("A")[:, 0]
    assert np.all(sim.total_rate() == 0)  # jammed: no empty pair left
    assert abs(theta.mean() - 0.906820) < 4 * theta.std(ddof=1) / math.sqrt(len(theta))


@pytest.mark.parametrize("seed", SEEDS)
def test_reservoir_boundaries_give_the_linear_exclusion_profile_and_current(seed):
    # Symmetric exclusion (hop rate 1) in a strip, periodic across, between a full and an
    # empty reservoir: the mean profile is exactly linear, rho(x) = 1 - (x + 1)/(Lx + 1),
    # and the current through each end is 1/(Lx + 1) per row.
    model = LatticeModel(["*", "A"], {"hop": ("A * -> * A", 1.0)})
    Ly, Lx, B = 4, 6, 16
    sim = KMC(model, (Ly, Lx), lattices=B, boundary=("periodic", "reservoir"), seed=seed)
    left = sim.geometry.ghost_coordinates[:, 1] == -1
    sim.set_boundary(species=left.astype(int))
    sim.run(100.0)  # relaxation time ~ (Lx + 1)^2 / pi^2 = 5
    sim.reset_counts()
    T, samples = 400.0, 100
    profiles = np.zeros((B, Lx))
    for _ in range(samples):
        sim.run(T / samples)
        profiles += sim.lattice.mean(axis=1) / samples
    exact = 1 - (np.arange(Lx) + 1) / (Lx + 1)
    # One standard error for all x (pooled over x: 90 degrees of freedom); 4.5 of them for
    # the largest of 6 deviations.
    error = np.sqrt(profiles.var(axis=0, ddof=1).mean() / B)
    assert np.all(np.abs(profiles.mean(axis=0) - exact) < 4.5 * error)
    current = sim.boundary_counts[:, 0] / (2 * Ly * T)  # both ends count
    assert abs(current.mean() - 1 / (Lx + 1)) < 4 * current.std(ddof=1) / math.sqrt(B)


def test_instantaneous_events_leave_no_reacting_pair():
    # After every run (and every lift) no CO-O neighbour pair exists in the original ZGB
    # model, nor an A-B pair in a user model with an instantaneous A + B.
    cases = [
        (zgb(0.45), ("CO", "O")),
        (LatticeModel(["*", "A", "B"], {"a": ("* -> A", 1.0), "b": ("* -> B", 1.0),
                                        "ab": ("A B -> * *", math.inf)}), ("A", "B")),
    ]
    for model, (a, b) in cases:
        sim = KMC(model, (16, 16), lattices=3, seed=5)
        sim.lift({a: 0.4, b: 0.4})
        for _ in range(3):
            s = sim.lattice
            ca, cb = model.code(a), model.code(b)
            for axis in (1, 2):
                nb = np.roll(s, 1, axis=axis)
                assert not np.any(((s == ca) & (nb == cb)) | ((s == cb) & (nb == ca)))
            sim.run(2.0)
        assert sim.counts[:, model.event_index(model.events[-1].name)].sum() > 0


# -- mean field, ZGB ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_well_mixed_kmc_reproduces_the_rate_equation_steady_state(seed):
    # ZGB with a finite reaction rate k, partners drawn at random: the mean-field rate
    # equations are the exact large-lattice limit. Their reactive steady state in closed
    # form: theta_* = y / (2 (1 - y)), theta_CO theta_O = y theta_* / (4 k),
    # theta_CO + theta_O = 1 - theta_* (the smaller theta_CO is the stable one here).
    y, k = 0.4, 1.0
    model = zgb(y, reaction_rate=k)
    empty = y / (2 * (1 - y))
    co = np.roots([1.0, -(1 - empty), y * empty / (4 * k)]).min()
    exact = np.array([empty, co, 1 - empty - co])
    assert np.allclose(mean_field_steady_state(model, [1.0, 0, 0]), exact, atol=1e-10)
    res = steady_coverages(model, (48, 48), replicas=6, burn_in=20.0, window=40.0,
                           seed=seed, well_mixed=True)
    # 4 standard errors; the finite-N bias is O(1/N) = 4e-4, below one standard error.
    assert np.all(np.abs(res.mean - exact) < 4 * res.standard_error)
    # On the lattice (neighbours only) the coverages differ clearly: a real check.
    lattice = steady_coverages(model, (48, 48), replicas=2, burn_in=20.0, window=20.0,
                               seed=seed)
    assert np.abs(lattice.mean - exact).max() > 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_zgb_transitions_are_bracketed_within_the_measured_finite_size_shift(seed):
    # Brute force from the empty lattice, 8 replicas of 32^2 for 300 MCS; published
    # y1 = 0.3874 (Jensen, Fogedby & Dickman 1990), y2 = 0.5256 (Ziff & Brosilow 1992).
    # Measured shifts of the half-poisoned points at that size and time (the demo's
    # quick run): y1 -0.015, y2 +0.009. At 500 MCS (16 replicas): y1 = 0.397, 0.381,
    # 0.379, 0.377 on 16^2, 32^2, 64^2, 128^2; y2 = 0.532, 0.533, 0.534 on 16^2 .. 64^2.
    # The brackets are 0.025 (y1) and 0.015 (y2) wide on either side of the published
    # values.
    def poisoned(y, species):
        sim = KMC(zgb(y), (32, 32), lattices=8, seed=seed)
        sim.run(300.0)
        return np.mean(sim.coverages(species)[:, 0] > 0.99)

    # The transition is where half the replicas poison: it lies inside the bracket.
    assert poisoned(0.3874 - 0.025, "O") >= 0.5 > poisoned(0.3874 + 0.025, "O")
    assert poisoned(0.5256 - 0.015, "CO") < 0.5 <= poisoned(0.5256 + 0.015, "CO")


def test_zgb_rate_conventions():
    model = zgb(0.3, desorption_rate=0.1, diffusion_rate=2.0)
    assert model.species == ("*", "CO", "O")
    rates = dict(zip(model.event_names, model.rates))
    assert rates == {"CO_adsorption": 0.3, "O2_adsorption": 0.35, "reaction": math.inf,
                     "CO_desorption": 0.1, "CO_diffusion": 2.0}
    # One trial per site per unit time on the empty lattice: y N CO trials, (1 - y) N O2
    # trials on an empty pair (2 N bonds at (1 - y) / 2).
    sim = KMC(zgb(0.3), (8, 8))
    assert math.isclose(sim.total_rate()[0], 64 * 0.3 + 128 * 0.35)


# -- reproducibility, many lattices ----------------------------------------------------------


def test_split_runs_and_batches_give_the_same_trajectory():
    model = zgb(0.5, reaction_rate=20.0, diffusion_rate=1.0)
    one = KMC(model, (12, 12), lattices=4, seed=9)
    one.lift({"CO": 0.2, "O": 0.3})
    one.run(3.0)
    split = KMC(model, (12, 12), lattices=4, seed=9)
    split.lift({"CO": 0.2, "O": 0.3})
    for t in (0.5, 1.25, 3.0):
        split.run(until=t)
    assert np.array_equal(one.lattice, split.lattice)
    assert np.array_equal(one.counts, split.counts)
    # Lattice id 2 alone is the same lattice as in the batch.
    alone = KMC(model, (12, 12), ids=[2], seed=9)
    alone.lift({"CO": 0.2, "O": 0.3})
    alone.run(3.0)
    assert np.array_equal(alone.lattice[0], one.lattice[2])
    other = KMC(model, (12, 12), ids=[2], seed=10)
    other.lift({"CO": 0.2, "O": 0.3})
    other.run(3.0)
    assert not np.array_equal(other.lattice[0], one.lattice[2])


@pytest.mark.mpi
def test_same_seed_same_trajectory_on_any_number_of_ranks():
    comm = MPI.COMM_WORLD
    model = zgb(0.5)
    n = 5
    mine = rank_block(n, comm)
    sim = KMC(model, (16, 16), ids=list(mine), seed=4)
    sim.lift({"CO": 0.1, "O": 0.3})
    sim.run(5.0)
    gathered = np.concatenate(comm.allgather(sim.lattice))
    serial = KMC(model, (16, 16), lattices=n, seed=4)  # every rank: all lattices
    serial.lift({"CO": 0.1, "O": 0.3})
    serial.run(5.0)
    assert np.array_equal(gathered, serial.lattice)
    # The coarse stepper splits replicas over ranks: same mean to the last bit.
    stepper = coverage_stepper(model, (8, 8), species=["CO", "O"], dt=0.5, burst_time=1.0,
                               replicas=3, seed=2, comm=comm)
    alone = coverage_stepper(model, (8, 8), species=["CO", "O"], dt=0.5, burst_time=1.0,
                             replicas=3, seed=2, comm=MPI.COMM_SELF)
    U = stepper(np.array([0.1, 0.4]), 0.0, 2.0)
    assert np.array_equal(U, alone(np.array([0.1, 0.4]), 0.0, 2.0))
    assert np.array_equal(stepper.standard_error, alone.standard_error)


def test_lift_is_an_unbiased_rounding_that_fills_every_site():
    model = LatticeModel(["*", "A", "B"], {"a": ("* -> A", 1.0)})
    sim = KMC(model, (5, 5), lattices=400, seed=3)
    counts = sim.lift({"A": 0.31, "B": np.linspace(0.1, 0.5, 400)})
    assert np.all(counts.sum(axis=1) == 25)
    assert np.all(np.abs(counts[:, 1] - 0.31 * 25) < 1)  # floor or ceil of the target
    assert abs(counts[:, 1].mean() - 7.75) < 4 * 0.433 / math.sqrt(400)  # Bernoulli(0.75)
    assert np.array_equal(sim.species_counts(), counts)
    assert np.allclose(sim.coverages(["A", "B"]), counts[:, 1:] / 25)


def test_per_lattice_rates_and_patches_with_reservoirs():
    # Each patch its own rate: Langmuir isotherms ka / (ka + kd) per lattice; ghosts count
    # nothing for site events.
    ka = np.array([0.5, 1.0, 4.0])
    sim = KMC(langmuir(), (20, 20), lattices=3, boundary="reservoir", seed=1)
    sim.set_rates(ads=ka)
    sim.set_boundary({"A": [0.0, 0.5, 1.0]})
    assert np.array_equal(sim.ghost_species.mean(axis=1) > 0, [False, True, True])
    sim.run(8.0)
    theta = sim.coverages("A")[:, 0]
    assert np.all(np.abs(theta - ka / (ka + 1)) < 4 * np.sqrt(theta * (1 - theta) / 400))
    assert sim.boundary_counts.sum() == 0


# -- the equation-free coarse stepper --------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_coarse_steady_state_of_the_kmc_stepper_is_the_langmuir_isotherm(seed):
    from hmm_fem.equation_free import coarse_steady_state

    replicas, N, H = 32, 256, 0.5
    stepper = coverage_stepper(langmuir(2.0, 1.0), (16, 16), species=["A"], dt=0.1,
                               burst_time=H, replicas=replicas, seed=seed, comm=MPI.COMM_SELF)
    U, report = coarse_steady_state(stepper, [0.3], horizon=H, tol=1e-6, return_report=True)
    # The map's noise s: the binomial spread of the replicas' sites, sqrt(p(1-p)/(R N)).
    # Newton stops at |Phi(U) - U| <= 2 s on one noisy evaluation, so the mean residual is
    # below (2 + 4) s (4 standard errors), and the error below that over 1 - Phi' with the
    # exact Phi' = exp(-(ka + kd) H).
    s = math.sqrt(2 / 9 / (replicas * N))
    assert abs(U[0] - 2 / 3) < 6 * s / (1 - math.exp(-3 * H))
    assert report.noise_limited


# -- coarse bifurcation of ZGB with a finite reaction rate --------------------------------


def test_zgb_mean_field_references_are_fixed_points_and_the_fold_is_exact():
    # Closed forms against the model's own rate equations: both states are zeros of
    # mean_field_rhs, the time integration reaches the stable one, the fold of k = 1 is
    # y = 1/2 with theta = (1/2, 1/4, 1/4), and the exact coarse multipliers exp(H sigma)
    # mark the states: |mu| < 1 (stable), > 1 (saddle), 1 at the fold.
    for y in (0.3, 0.44, 0.49):
        model = zgb(y, reaction_rate=1.0)
        stable, saddle = zgb_mean_field_states(y)
        assert np.abs(model.mean_field_rhs(stable)).max() < 1e-15
        assert np.abs(model.mean_field_rhs(saddle)).max() < 1e-15
        assert np.allclose(mean_field_steady_state(model, [1.0, 0, 0]), stable, atol=1e-9)
        species = ["CO", "O"]
        assert abs(mean_field_multipliers(model, stable, species=species, horizon=2.0)[0]) < 1
        assert abs(mean_field_multipliers(model, saddle, species=species, horizon=2.0)[0]) > 1
    y_fold, theta = zgb_mean_field_fold(reaction_rate=1.0)
    assert math.isclose(y_fold, 0.5, rel_tol=1e-13)
    assert np.allclose(theta, [0.5, 0.25, 0.25], atol=1e-13)
    mu = mean_field_multipliers(zgb(y_fold, reaction_rate=1.0), theta, species=["CO", "O"],
                                horizon=2.0)
    assert abs(mu[0] - 1) < 1e-8
    assert zgb_mean_field_states(0.51) == (None, None)
    y10, _ = zgb_mean_field_fold(reaction_rate=10.0)  # a faster reaction: fold further out
    assert 0.5 < y10 < 2 / 3


def _well_mixed_stepper(y, seed, side=64, replicas=16, H=2.0):
    return coverage_stepper(zgb(y, reaction_rate=1.0), (side, side), species=["CO", "O"],
                            dt=H / 4, burst_time=H, replicas=replicas, seed=seed,
                            comm=MPI.COMM_SELF, well_mixed=True)


def _mean_field_map_matrix(y, theta, H):
    # Exact linearised time-H map of the rate equations in (theta_CO, theta_O): expm(H J),
    # J by central differences (exact for the quadratic right-hand side).
    from scipy.linalg import expm

    model = zgb(y, reaction_rate=1.0)

    def f(x):
        return model.mean_field_rhs(np.r_[1 - x.sum(), x])[1:]

    x0, h = np.asarray(theta[1:], float), 1e-3
    J = np.column_stack([(f(x0 + h * e) - f(x0 - h * e)) / (2 * h) for e in np.eye(2)])
    return expm(H * J)


@pytest.mark.parametrize("seed", SEEDS)
def test_coarse_newton_krylov_finds_both_mean_field_states_in_the_well_mixed_limit(seed):
    from hmm_fem.equation_free import coarse_steady_state

    # Well-mixed ZGB at k = 1, y = 0.44: the coarse map is the mean-field flow (large N),
    # whose stable state and saddle are known in closed form. Newton-Krylov from guesses
    # 0.04 away. Bound: Newton stops at |Phi(U) - U| <= 2 s (s the noise norm of one map
    # evaluation); the noise of that evaluation is below 4 s (4 standard errors), so
    # |(I - M)(U - U*)| <= 6 s with M the exact linearised map: |U - U*| <= 6 s |(I-M)^-1|.
    # The finite-N bias, O(1/N) = 2e-4, is far below s (~3e-3 with 64^2 sites, 16 replicas).
    y, H = 0.44, 2.0
    stepper = _well_mixed_stepper(y, seed)
    for exact, offset in zip(zgb_mean_field_states(y), ([0.03, -0.03], [-0.03, 0.03])):
        U = coarse_steady_state(stepper, exact[1:] + offset, horizon=H, tol=1e-6)
        stepper(U, 0.0, H)
        s = float(np.linalg.norm(stepper.standard_error))
        amplification = np.linalg.norm(np.linalg.inv(np.eye(2) - _mean_field_map_matrix(
            y, exact, H)), 2)
        assert np.linalg.norm(U - exact[1:]) < 6 * s * amplification


@pytest.mark.parametrize("seed", SEEDS)
def test_coarse_eigenvalues_of_the_well_mixed_kmc_are_the_mean_field_multipliers(seed):
    # At the exact stable state and saddle of y = 0.44 (H = 2): the leading coarse
    # eigenvalue of the KMC map (the toolkit's forward differences) against exp(H sigma)
    # of the rate equations (0.643 and 1.484): |mu| < 1 at the stable state, > 1 at the
    # saddle. (Central differences would step out of the simplex: their step s^(1/3) ~ 0.1
    # exceeds the smaller coverage, 0.082.) Noise: the columns (e+_j - e0) / d share the
    # image's noise e0; each evaluation has the covariance C (from the replicas) and
    # d = sqrt(|s|) (the toolkit's step for |U| < 1, s the noise norm); to first order
    # delta mu = left . delta J . v with the exact eigenvectors (left . v = 1), so
    # var = (|v|^2 + |sum v|^2) left C left / d^2. Tolerance: 4 of those standard errors
    # plus the truncation error of the forward difference of the exact map at that step.
    from scipy.integrate import solve_ivp

    from hmm_fem.equation_free import coarse_eigenvalues

    y, H = 0.44, 2.0
    model = zgb(y, reaction_rate=1.0)

    def exact_map(x):
        def f(t, v):
            return model.mean_field_rhs(np.r_[1 - v.sum(), v])[1:]

        return solve_ivp(f, (0, H), x, rtol=1e-11, atol=1e-13).y[:, -1]

    for exact in zgb_mean_field_states(y):
        stepper = _well_mixed_stepper(y, seed, replicas=64)
        U = exact[1:]
        mu = coarse_eigenvalues(stepper, U, horizon=H, k=2)
        stepper(U, 0.0, H)
        C = np.cov(stepper.replica_states.T) / stepper.replicas  # of one map evaluation
        d = math.sqrt(math.sqrt(np.trace(C)))
        M = _mean_field_map_matrix(y, exact, H)
        values, right = np.linalg.eig(M)
        lead = int(np.argmax(np.abs(values)))
        left, v = np.linalg.inv(right)[lead], right[:, lead]
        weight = float(np.sum(np.abs(v) ** 2) + abs(v.sum()) ** 2)
        sigma = math.sqrt(weight * float(np.real(left.conj() @ C @ left))) / d
        image = exact_map(U)
        columns = [(exact_map(U + d * e) - image) / d for e in np.eye(2)]
        truncation = abs(np.abs(np.linalg.eigvals(np.column_stack(columns))).max()
                         - abs(values[lead]))
        assert abs(abs(mu[0]) - abs(values[lead])) < 4 * sigma + truncation
        assert (abs(mu[0]) < 1) == (abs(values[lead]) < 1)


# Fold of the continuation below (64^2 sites, 8 replicas, H = 2) over 20 seeds: mean
# 0.5003, standard deviation FOLD_SD = 0.0036 (measured; its mean is 0.4 standard errors
# from 1/2). The Branch's own fold_standard_errors (~2e-4) underestimate it 15-fold: the
# corrector samples near a fold share their guesses and their Newton errors.
FOLD_SD = 0.0036


@pytest.mark.parametrize("seed", SEEDS)
def test_continuation_turns_at_the_mean_field_fold_in_the_well_mixed_limit(seed):
    from hmm_fem.equation_free import continuation

    # Pseudo-arclength continuation of the well-mixed ZGB (k = 1) from the stable state at
    # y = 0.40 up the reactive branch: it turns at the fold, where the coarse eigenvalue
    # crosses 1, and comes back along the saddle branch. The exact fold is y = 1/2,
    # theta_CO = theta_O = 1/4; tolerance 4 measured standard deviations of the fold.
    H = 2.0
    family = coverage_stepper_family(
        lambda y: zgb(y, reaction_rate=1.0), (64, 64), species=["CO", "O"], dt=H / 4,
        burst_time=H, replicas=8, seed=seed, comm=MPI.COMM_SELF, well_mixed=True)
    branch = continuation(family, zgb_mean_field_states(0.40)[0][1:], 0.40, 0.7, horizon=H,
                          step=0.02, tol=1e-6, max_points=30)
    changes = branch.stability_changes()
    assert len(changes) == 1
    fold = changes[0]
    assert abs(branch.fold_parameters[fold] - 0.5) < 4 * FOLD_SD
    assert branch.stability[0] == "stable" and branch.stability[-1] == "unstable"
    # The last point is on the saddle branch: nearer the mean-field saddle than the stable
    # state at its y.
    y_last, U_last = branch.parameters[-1], branch.states[-1]
    stable, saddle = zgb_mean_field_states(y_last)
    assert abs(U_last[0] - saddle[1]) < abs(U_last[0] - stable[1])


@pytest.mark.parametrize("seed", SEEDS)
def test_the_o_poisoned_state_changes_stability_at_the_brute_force_y1(seed):
    # ZGB with k = 1 and CO diffusion (D = 10, O immobile) on the lattice: brute force
    # from the empty lattice (16 replicas, 500 MCS) poisons with O below y1 = 0.356
    # (32^2), 0.354 (64^2), above 0.36 on 16^2 (where half the replicas poison). The
    # coarse eigenvalue of the O-poisoned state (random vacancies at dilution 0.005,
    # healed 32 MCS, growth over 64 MCS) crosses 1 there: it is below 1 at 0.33 and above
    # 1 at 0.38 (y1 -0.024 and +0.026, three times the lattice-size spread of y1), each by
    # 4 standard errors.
    def mu(y):
        return absorbing_multiplier(zgb(y, reaction_rate=1.0, diffusion_rate=10.0), (64, 64),
                                    species="O", horizon=64.0, healing_time=32.0,
                                    dilution=0.005, lattices=64, seed=seed)

    below, above = mu(0.33), mu(0.38)
    assert below.value + 4 * below.standard_error < 1 < above.value - 4 * above.standard_error


# -- errors -------------------------------------------------------------------------------


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown species"):
        LatticeModel(["*", "A"], {"x": ("* -> B", 1.0)})
    with pytest.raises(ValueError, match="one '->'"):
        LatticeModel(["*", "A"], {"x": ("* A", 1.0)})
    with pytest.raises(ValueError, match="two on each side"):
        LatticeModel(["*", "A"], {"x": ("* * -> A", 1.0)})
    with pytest.raises(ValueError, match="only a pair event may be instantaneous"):
        LatticeModel(["*", "A"], {"x": ("* -> A", math.inf)})
    with pytest.raises(ValueError, match="must be >= 0"):
        LatticeModel(["*", "A"], {"x": ("* -> A", -1.0)})
    with pytest.raises(ValueError, match="changes nothing"):
        LatticeModel(["*", "A"], {"x": ("A * -> A *", 1.0)})
    with pytest.raises(ValueError, match="duplicate species"):
        LatticeModel(["*", "*"], {"x": ("* -> *", 1.0)})
    with pytest.raises(ValueError, match="y must be in"):
        zgb(1.5)
    with pytest.raises(ValueError, match="well-mixed mode needs finite rates"):
        KMC(zgb(0.5), (4, 4), well_mixed=True)
    with pytest.raises(ValueError, match="shape must be"):
        KMC(zgb(0.5), (2, 2, 2))
    with pytest.raises(ValueError, match="boundary must be one of"):
        KMC(zgb(0.5), (4, 4), boundary="open")
    sim = KMC(zgb(0.5), (4, 4))
    with pytest.raises(ValueError, match="sum to 1"):
        sim.lift({"CO": 0.7, "O": 0.6})
    sim.lift({"CO": 0.7, "O": 0.6}, clip=True)
    assert sim.clipped == 1
    with pytest.raises(ValueError, match="no ghost sites"):
        sim.set_boundary({"CO": 0.5})
    with pytest.raises(ValueError, match="vacancy"):
        sim.lift({"*": 0.5})
    with pytest.raises(KeyError, match="no event"):
        sim.set_rates(adsorption=1.0)
    with pytest.raises(ValueError, match="instantaneous"):
        sim.set_rates(reaction=1.0)
    with pytest.raises(ValueError, match="give a duration"):
        sim.run()
    with pytest.raises(ValueError, match="until must not be before"):
        sim.run(until=-1.0)
    from hmm_fem.equation_free.steady import CoarseSolveError

    family = coverage_stepper_family(zgb, (4, 4), species=["CO", "O"], dt=0.5, burst_time=1.0)
    with pytest.raises(CoarseSolveError, match="rejects the parameter -0.1"):
        family(-0.1)  # a predictor step out of [0, 1]: continuation halves the step
    with pytest.raises(ValueError, match="dilution must be in"):
        absorbing_multiplier(zgb(0.3), (4, 4), species="O", horizon=1.0, dilution=0.0)
    with pytest.raises(ValueError, match="cannot be the vacancy"):
        absorbing_multiplier(zgb(0.3), (4, 4), species="*", horizon=1.0)
    with pytest.raises(ValueError, match="reaction_rate must be finite"):
        zgb_mean_field_fold(reaction_rate=math.inf)
