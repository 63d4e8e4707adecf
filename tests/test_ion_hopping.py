"""Ion-hopping KMC: the compiled kernel against exact results and a pure-Python reference.

Stochastic tests are seeded; their tolerances are 4 standard errors (stated at each test).
``HMM_KMC_SEEDS=20`` runs every stochastic test over 20 seeds (how they were checked).

Exact results used here, for the non-interacting lattice gas with exclusion (``J = 0``) on
an ``Lx x Ly`` torus with ``N`` ions on ``M`` sites:

* **Stationary law.** Hops conserve the ion number, and every configuration has as many
  ways in as out at equal rates (a row of the torus has as many ion-vacancy as
  vacancy-ion steps along x, so the bias cancels from the balance): the uniform law over
  the ``C(M, N)`` configurations is stationary at any bias. A given directed bond then
  holds (ion, vacancy) with probability ``N (M - N) / (M (M - 1))``.
* **Drift.** The expected net hop rate along x is ``(e^u - e^-u)`` times the number of
  (ion, vacancy) bonds along +x, whose mean is ``M`` times that probability:
  ``j_x = 2 sinh(u) N (M - N) / (M - 1)``, for every bias ``u``. Reduced conductivity
  ``s = j_x / (2 u M) = sinh(u)/u c (1 - c) M / (M - 1)`` (``c = N / M``).
* **Collective diffusion.** At zero bias the numbers of +x and -x candidate hops are equal
  in every configuration (same row argument), so the summed displacement ``X`` is a
  martingale whose jumps ``+-1`` come at the total x-hop rate: ``<X^2> = 2 t N (M - N) /
  (M - 1)``, the same ``s`` through Nernst-Einstein ``s = <X^2> / (2 t M)``.
* **Tracer with one vacancy.** The correlation factor ``f = (1 + <cos>) / (1 - <cos>)`` with
  ``<cos>`` the mean cosine between successive jumps of a tracer (Compaan & Haven, Trans.
  Faraday Soc. 52, 786, 1956); on the torus ``<cos>`` is exact from the vacancy's random walk
  until it next exchanges with the tracer (a sparse linear solve below), and tends to
  ``f = 1 / (pi - 1) = 0.46694`` as ``L -> inf``.
"""

import itertools
import math
import os

import numpy as np
import pytest

from hmm_fem.micro.kmc.ion_hopping import (
    BOLTZMANN_EV,
    SQUARE_LATTICE_CORRELATION_FACTOR,
    HoppingMaterial,
    IonConductivityModel,
    IonHopping,
    arrhenius_fit,
    ion_conductivity,
    measure_transport,
)

SEEDS = list(range(int(os.environ.get("HMM_KMC_SEEDS", "1"))))


def lattice_gas_drift(u, N, M):
    return 2 * math.sinh(u) * N * (M - N) / (M - 1)


# -- the kernel against a pure-Python reference ----------------------------------------------

_MASK = (1 << 64) - 1


class Xoshiro:
    """xoshiro256+ in Python integers (Blackman & Vigna 2018), as the kernels draw it."""

    def __init__(self, state):
        self.s = [int(v) for v in state]

    def uniform(self):
        s0, s1, s2, s3 = self.s
        result = (s0 + s3) & _MASK
        t = (s1 << 17) & _MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & _MASK
        self.s = [s0, s1, s2, s3]
        return (result >> 11) * 2.0**-53


def reference_candidates(occ, Lx, Ly, K, u):
    """Every possible hop of a configuration by brute force: (class, site) with class 4d + n."""
    moves = []
    steps = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    for s in np.flatnonzero(occ):
        x, y = s % Lx, s // Lx
        around = [occ[(x + dx) % Lx + Lx * ((y + dy) % Ly)] for dx, dy in steps]
        n = sum(around)
        for d, (dx, dy) in enumerate(steps):
            if not around[d]:
                moves.append((4 * d + n, s, (x + dx) % Lx + Lx * ((y + dy) % Ly)))
    rates = np.array([math.exp((u if d == 0 else -u if d == 1 else 0.0) - K * n)
                      for d in range(4) for n in range(4)])
    return moves, rates


def test_kernel_follows_a_pure_python_reference_event_by_event():
    # An asymmetric 5 x 4 torus, interaction and bias on: after every one of 400 single
    # hops the compiled class lists hold exactly the hops a brute-force enumeration finds;
    # the waiting time and the class drawn equal those of the reference fed the same random
    # numbers; the hop moves one ion to a vacant neighbour and its displacement follows.
    Lx, Ly, K, u = 5, 4, 0.7, 0.4
    sim = IonHopping((Lx, Ly), ions=9, replicas=1, bias=u, interaction=K, seed=11)
    rng = Xoshiro(sim._rng[0])
    for _ in range(400):
        occ = sim.occupation[0].copy()
        moves, rates = reference_candidates(occ, Lx, Ly, K, u)
        counts = np.bincount([c for c, _, _ in moves], minlength=16)
        np.testing.assert_array_equal(sim.candidates()[0], counts)
        total = float(counts @ rates)
        t0, disp0, ion_at0 = sim.time[0], sim.displacement[0].copy(), sim.ion_at[0].copy()
        dt = -math.log(1.0 - rng.uniform()) / total
        pick, c = rng.uniform() * total, 15
        for k in range(16):
            if pick < rates[k] * counts[k]:
                c = k
                break
            pick -= rates[k] * counts[k]
        rng.uniform()  # the member of the class (its order in the list is the kernel's own)
        assert sim.run(max_events=1)[0] == 1
        assert sim.time[0] - t0 == pytest.approx(dt, rel=1e-13)
        moved = np.flatnonzero(sim.occupation[0] != occ)
        assert len(moved) == 2
        source = int(moved[occ[moved] == 1][0])
        target = int(moved[occ[moved] == 0][0])
        assert (c, source, target) in moves  # a hop of the class the reference drew
        ion = ion_at0[source]
        step = (sim.displacement[0] - disp0)[ion]
        assert abs(step).sum() == 1 and np.count_nonzero(sim.displacement[0] - disp0) == 1
        assert sim.ion_at[0, target] == ion and sim.ion_at[0, source] == -1
        assert [(1, 0), (-1, 0), (0, 1), (0, -1)][c // 4] == tuple(step)
    assert [int(v) for v in sim._rng[0]] == rng.s  # the same number of draws


@pytest.mark.parametrize("seed", SEEDS)
def test_interacting_gas_samples_the_boltzmann_law(seed):
    # Detailed balance with energy -J per ion-ion bond: at zero bias the time average of
    # the number of bonds equals its Boltzmann average, enumerated exactly over the
    # C(16, 6) = 8008 configurations of a 4 x 4 torus. Tolerance 4 standard errors (over
    # replicas; snapshots at fixed times, 1000 per replica after a burn-in).
    L, N, K = 4, 6, 1.0
    M = L * L
    right = (np.arange(M) % L + 1) % L + L * (np.arange(M) // L)
    up = (np.arange(M) + L) % M
    weights = bonds_sum = 0.0
    for ions in itertools.combinations(range(M), N):
        occ = np.zeros(M)
        occ[list(ions)] = 1
        bonds = float((occ * occ[right]).sum() + (occ * occ[up]).sum())
        w = math.exp(K * bonds)
        weights += w
        bonds_sum += w * bonds
    exact = bonds_sum / weights
    sim = IonHopping((L, L), ions=N, replicas=16, interaction=K, seed=seed)
    sim.run(50.0)
    samples = np.empty((1000, 16))
    for k in range(1000):
        sim.run(0.5)
        occ = sim.occupation.astype(float)
        samples[k] = (occ * occ[:, right]).sum(axis=1) + (occ * occ[:, up]).sum(axis=1)
    per_replica = samples.mean(axis=0)
    error = per_replica.std(ddof=1) / math.sqrt(16)
    assert abs(per_replica.mean() - exact) < 4 * error
    assert exact > N * (N - 1) / (M - 1) * 2 * 1.2  # the attraction matters: 20 % above random


# -- drift, collective and tracer transport against exact results ----------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("u", [0.05, 0.5])
def test_lattice_gas_drift_is_exact_at_any_bias(seed, u):
    # j_x = 2 sinh(u) N (M - N) / (M - 1) exactly (module docstring), in the linear regime
    # (u = 0.05) and far beyond it (u = 0.5); the expected-rate estimator and the counted
    # hops both, within 4 standard errors (over 8 replicas).
    Lx, Ly, N = 16, 12, 60
    M = Lx * Ly
    sim = IonHopping((Lx, Ly), ions=N, replicas=8, bias=u, seed=seed)
    estimate = measure_transport(sim, 100.0)
    exact = lattice_gas_drift(u, N, M) / (2 * u * M)
    for name in ("conductivity", "conductivity_counted"):
        value, error = getattr(estimate, name), estimate.standard_errors[name]
        assert abs(value - exact) < 4 * error, (name, value, exact, error)
    # In linear response the estimator from expected rates is far less noisy than counting
    # hops (the counts' noise does not shrink with the bias; at u = 0.5 the gain is 2-4x).
    if u < 0.1:
        assert estimate.standard_errors["conductivity"] < 0.2 * estimate.standard_errors[
            "conductivity_counted"]


@pytest.mark.parametrize("seed", SEEDS)
def test_lattice_gas_collective_diffusion_is_exact(seed):
    # At zero bias <X^2> = 2 t N (M - N) / (M - 1) per axis (module docstring): the
    # Nernst-Einstein conductivity from the collective mean-square displacement over 40
    # blocks equals the exact s within 4 standard errors (8 replicas); no drift measured.
    L, N = 16, 96
    M = L * L
    sim = IonHopping((L, L), ions=N, replicas=8, seed=seed)
    estimate = measure_transport(sim, 200.0, blocks=40)
    exact = N * (M - N) / ((M - 1) * M)
    value = estimate.conductivity_collective
    assert abs(value - exact) < 4 * estimate.standard_errors["conductivity_collective"]
    assert math.isnan(estimate.conductivity)


@pytest.mark.parametrize("seed", SEEDS)
def test_drift_and_collective_diffusion_agree_through_nernst_einstein(seed):
    # With an attraction (K = J / kT = 0.8) nothing is in closed form, but linear response
    # holds: the drift at u = 0.05 (relative nonlinearity ~u^2/6 = 4e-4) equals the
    # collective mean-square displacement at zero bias within 4 combined standard errors.
    # The attraction must matter: s is at least 10 % below the lattice-gas value.
    L, N, K = 16, 128, 0.8
    M = L * L
    drift = measure_transport(
        IonHopping((L, L), ions=N, replicas=8, bias=0.05, interaction=K, seed=(seed, 1)),
        100.0, burn_in=50.0,
    )
    still = measure_transport(
        IonHopping((L, L), ions=N, replicas=8, interaction=K, seed=(seed, 2)),
        200.0, blocks=40, burn_in=50.0,
    )
    error = math.hypot(drift.standard_errors["conductivity"],
                       still.standard_errors["conductivity_collective"])
    assert abs(drift.conductivity - still.conductivity_collective) < 4 * error
    assert drift.conductivity < 0.9 * N * (M - N) / ((M - 1) * M)


def correlation_factor_on_the_torus(L):
    """Exact f of one vacancy on the L x L torus (module docstring): a sparse solve."""
    import scipy.sparse as sparse
    import scipy.sparse.linalg as splinalg

    M = L * L
    sites = np.arange(1, M)  # the tracer sits at site 0 = (0, 0)
    row = {s: k for k, s in enumerate(sites)}
    steps = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    i, j, v = [], [], []
    exchange = np.zeros((M - 1, 4))  # probability of exchanging from site s, by direction
    for s in sites:
        x, y = s % L, s // L
        i.append(row[s])
        j.append(row[s])
        v.append(1.0)
        for dx, dy in steps:
            t = (x + dx) % L + L * ((y + dy) % L)
            if t == 0:  # the tracer jumps onto the vacancy: direction (x, y) from the origin
                direction = ((x + 1) % L - 1, (y + 1) % L - 1)
                exchange[row[s], steps.index(direction)] += 0.25
            else:
                i.append(row[s])
                j.append(row[t])
                v.append(-0.25)
    walk = sparse.csc_matrix((v, (i, j)), shape=(M - 1, M - 1))
    first = splinalg.spsolve(walk, exchange)[row[L - 1]]  # behind a tracer that jumped +x
    cos = first[0] - first[1]
    return (1 + cos) / (1 - cos)


def test_torus_correlation_factor_tends_to_compaan_haven():
    # The finite-lattice reference converges to 1 / (pi - 1) like 1 / L^2.
    f = {L: correlation_factor_on_the_torus(L) for L in (16, 32, 64)}
    assert abs(f[64] - SQUARE_LATTICE_CORRELATION_FACTOR) < 3e-4
    assert abs(SQUARE_LATTICE_CORRELATION_FACTOR - 0.46694) < 1e-5
    ratio = (f[16] - f[32]) / (f[32] - f[64])
    assert 3.5 < ratio < 4.5


@pytest.mark.parametrize("seed", SEEDS)
def test_tracer_with_one_vacancy_carries_the_square_lattice_correlation_factor(seed):
    # One vacancy on a 16 x 16 torus: <|R|^2> / (a^2 * hops) = f, against the exact
    # f(16) = 0.4712 of the torus (f(inf) = 1 / (pi - 1) = 0.46694, Compaan & Haven 1956),
    # within 4 standard errors (32 replicas, about 400 jumps per ion: the finite-time
    # correction, about 0.4 / (f * jumps), is 0.2 %, below the error of 1.1 %; |R|^2 of one
    # ion fluctuates by about its mean, so the error falls with the number of ions and
    # replicas, not with the run length). The tracer
    # diffusivity d* = f * (jump rate per ion) / 4 with jump rate 4 / (M - 1) per unit time.
    L = 16
    M = L * L
    sim = IonHopping((L, L), ions=M - 1, replicas=32, seed=seed)
    estimate = measure_transport(sim, 100.0 * M)
    exact = correlation_factor_on_the_torus(L)
    error = estimate.standard_errors["correlation_factor"]
    assert abs(estimate.correlation_factor - exact) < 4 * error
    assert error < 0.015 * exact
    d_exact = exact * (4 / (M - 1)) / 4
    assert abs(estimate.tracer - d_exact) < 4 * estimate.standard_errors["tracer"] + 1e-3 * d_exact


# -- physical units, the Arrhenius law, the micro model --------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_arrhenius_slope_of_sigma_t_recovers_the_activation_energy(seed):
    # sigma(T) at five temperatures (independent runs), weighted fit of ln(sigma T) against
    # 1 / (k T): the slope recovers E_a and the prefactor that of the lattice gas,
    # e q^2 nu0 c (1 - c) M / (M - 1) sinh(u) / u / (a k), within 4 standard errors of the fit.
    material = HoppingMaterial(activation_energy=0.35, attempt_frequency=1e13, ion_fraction=0.4)
    T = np.array([250.0, 300.0, 350.0, 400.0, 450.0])
    results = [ion_conductivity(material, t, shape=(16, 16), seed=(seed, k), replicas=8)
               for k, t in enumerate(T)]
    sigma, error = np.array(results).T
    A, Ea, cov = arrhenius_fit(T, sigma, error)
    assert abs(Ea - 0.35) < 4 * math.sqrt(cov[1, 1])
    assert math.sqrt(cov[1, 1]) < 2e-3  # the test can fail: 0.6 % of E_a
    M, N = 256, round(0.4 * 256)
    u = 0.05
    exact_A = (1.602176634e-19 * 1e13 / (3e-10 * BOLTZMANN_EV)
               * N * (M - N) / ((M - 1) * M) * math.sinh(u) / u)
    assert abs(math.log(A / exact_A)) < 4 * math.sqrt(cov[0, 0])


def test_lattice_gas_conductivity_in_physical_units():
    # e q^2 Gamma0 c (1 - c) / (a k T) by hand for the default material at 300 K.
    material = HoppingMaterial()
    kT = BOLTZMANN_EV * 300.0
    gamma0 = 1e13 * math.exp(-0.3 / kT)
    by_hand = 1.602176634e-19 * gamma0 * 0.25 / (3e-10 * kT)
    assert material.lattice_gas_conductivity(300.0) == pytest.approx(by_hand, rel=1e-14)
    assert material.reduced_bias(1e3, 300.0) == pytest.approx(1e3 * 3e-10 / (2 * kT), rel=1e-14)


def test_micro_model_has_frozen_noise_and_shares_solves_by_state():
    from mpi4py import MPI

    from hmm_fem.coupling import Dispatcher

    material = HoppingMaterial()
    model = IonConductivityModel(material, shape=(12, 12), duration=20.0, replicas=4, seed=3)
    T = np.array([300.0, 300.0, 300.04, 320.0])
    first = model.evaluate({"T": T})
    again = model.evaluate({"T": T[::-1]})
    np.testing.assert_array_equal(first.value, again.value[::-1])  # a function of the state
    assert first.value[0] == first.value[1] != first.value[2]  # other state, other stream
    assert np.all(first.standard_error > 0)
    # Within 4 standard errors of the exact (finite-lattice, weak-bias) lattice gas.
    M, N = 144, 72
    exact = material.conductivity_unit(T) * N * (M - N) / ((M - 1) * M) * math.sinh(0.05) / 0.05
    assert np.all(np.abs(first.value - exact) < 4 * first.standard_error)
    # The tangent of the single-barrier law, against central differences of the law.
    law = material.lattice_gas_conductivity
    h = 1e-3
    slope = (law(T + h) - law(T - h)) / (2 * h) / law(T)
    np.testing.assert_allclose(first.derivatives["T"] / first.value, slope, rtol=1e-6)
    # Through the dispatcher with a 0.1 K resolution: 300.04 K shares the solve of 300 K
    # (2 distinct states, one solve each), then 0.02 K lower every state is in the cache.
    dispatcher = Dispatcher(model, MPI.COMM_SELF, state_tolerance=0.1)
    before = model.solves
    shared = dispatcher.evaluate({"T": T})
    dispatcher.evaluate({"T": T - 0.02})
    assert model.solves - before == 2
    assert dispatcher.statistics.micro_solves == 2
    assert shared.value[0] == shared.value[2] == first.value[0]  # solved at the grid value


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="at least 3"):
        IonHopping((2, 8))
    with pytest.raises(ValueError, match="ions must be"):
        IonHopping((4, 4), ions=16)
    with pytest.raises(ValueError, match="duration, an end time or max_events"):
        IonHopping((4, 4), ions=3).run()
    with pytest.raises(ValueError, match="ion_fraction"):
        HoppingMaterial(ion_fraction=1.0)
    with pytest.raises(ValueError, match="activation_energy must be positive"):
        HoppingMaterial(activation_energy=-0.1)
    model = IonConductivityModel(HoppingMaterial(), shape=(6, 6), duration=1.0, replicas=2)
    with pytest.raises(ValueError, match="kelvin"):
        model.evaluate({"T": np.array([-5.0])})
