"""The KMC engine as a micro simulator: coverages in, coverages out.

* :func:`coverage_stepper`: a :class:`~hmm_fem.equation_free.CoarseTimeStepper` whose coarse
  state is the coverages of some species, with the KMC as micro simulator (lift: random
  placement with those coverages; micro step: a KMC run of the step's length; restrict:
  the coverages). The equation-free tools (``coarse_steady_state``, ``continuation``,
  ``coarse_eigenvalues``, ``projective_integrate``) then work on it.
* :func:`steady_coverages`: brute-force KMC, time-averaged coverages over replicas, with
  standard errors.
* :func:`mean_field_steady_state`: the stable steady state of the mean-field rate equations
  of a model (the large-lattice limit of the well-mixed KMC).
* :func:`coverage_stepper_family`: ``make_stepper(parameter)`` for
  :func:`~hmm_fem.equation_free.continuation`, with a model that the parameter builds.
* :func:`absorbing_multiplier`: the coarse eigenvalue of an absorbing (poisoned) state
  along the direction of a few random vacancies: where it crosses 1 the poisoned state
  changes stability (the continuous transition of the ZGB model at ``y1``).
* :func:`zgb_mean_field_states`, :func:`zgb_mean_field_fold`, :func:`mean_field_multipliers`:
  closed-form references for the ZGB model with a finite reaction rate in the well-mixed
  limit: both steady states, the fold, and the exact eigenvalues of the coarse map.

**Coarse bifurcation of the ZGB model.** With a random lift, the coverages are a closed
coarse description only if the adsorbates are mixed faster than they react. The original
ZGB model (immobile adsorbates, instantaneous reaction) grows CO islands near ``y2``: its
coarse steady states drift with the horizon and continuation does not turn at a fold. The
remedy of Makeev, Maroudas & Kevrekidis (J. Chem. Phys. 116, 10083, 2002) is fast surface
diffusion: ``zgb(y, reaction_rate=k, diffusion_rate=D)`` (mobile CO, immobile O, finite
reaction rate, the model of Tammaro & Evans). In the well-mixed limit
(``KMC(..., well_mixed=True)``) the coarse map is the mean-field flow, whose fold is known
in closed form (:func:`zgb_mean_field_fold`: ``y = 1/2`` at ``k = 1``). The O-poisoning
transition at ``y1`` is a lattice effect (immobile O; the mean-field O-poisoned state is
unstable for every ``y > 0``): it shows as the crossing of :func:`absorbing_multiplier`.
See ``demos/demo_kmc_co_oxidation.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from .engine import KMC
from .model import LatticeModel

__all__ = [
    "coverage_stepper",
    "coverage_stepper_family",
    "steady_coverages",
    "SteadyCoverages",
    "mean_field_steady_state",
    "mean_field_multipliers",
    "absorbing_multiplier",
    "Multiplier",
    "zgb_mean_field_states",
    "zgb_mean_field_fold",
]


def coverage_stepper(
    model: LatticeModel,
    shape,
    *,
    species: Sequence[str],
    dt: float,
    burst_time: float,
    healing_time: float = 0.0,
    replicas: int = 1,
    seed: int = 0,
    comm: MPI.Comm = MPI.COMM_WORLD,
    clip: bool = True,
    fit_window: float | None = None,
    **kmc_options,
):
    """A coarse time-stepper on the coverages of ``species``, with the KMC underneath.

    The micro state of a replica is a one-lattice :class:`~hmm_fem.micro.kmc.KMC` whose
    random stream is seeded from the replica's generator (so the stepper's rule holds:
    replica ``r`` of call ``c`` draws from ``default_rng([seed, r, c])``, on any number of
    ranks). ``lift(U)`` places the species at random with coverages ``U`` (the vacancy
    takes the rest; trial states of a Newton solver outside the simplex are projected onto
    it when ``clip``, and counted in the stepper's ``clipped_lifts``), ``micro_step`` runs
    the lattice for ``dt`` (a split run is the same trajectory as one run), ``restrict``
    returns the coverages.

    Args:
        model: The lattice model.
        shape: Lattice shape.
        species: Names of the species whose coverages are the coarse state.
        dt: Micro step of the stepper (a KMC run of that length; it only sets how often
            the coverages are sampled: the trajectory does not depend on it).
        burst_time: Burst length (see :class:`~hmm_fem.equation_free.CoarseTimeStepper`).
        healing_time: Healing time after the lift.
        replicas: Replicas (distributed over the ranks of ``comm``).
        seed: Seed of the stepper.
        comm: Communicator of the replicas.
        clip: Project lifted coverages onto the simplex instead of failing.
        fit_window: Fit window of the burst derivative.
        **kmc_options: ``boundary``, ``well_mixed`` for :class:`~hmm_fem.micro.kmc.KMC`.

    Returns:
        The :class:`~hmm_fem.equation_free.CoarseTimeStepper`, with ``clipped_lifts``
        (a list of one counter) and ``model``.

    Raises:
        ValueError: If ``species`` is empty, unknown, or names the vacancy.
    """
    from ...equation_free import CoarseTimeStepper

    species = [species] if isinstance(species, str) else list(species)
    if not species:
        raise ValueError("coverage_stepper: give the species of the coarse state")
    for name in species:
        model.code(name)
        if name == model.vacancy:
            raise ValueError(
                f"coverage_stepper: the vacancy {name!r} takes what the others leave; it "
                "cannot be a coarse variable"
            )
    clipped = [0]

    def lift(U, rng):
        sim = KMC(model, shape, seed=int(rng.integers(2**63)), **kmc_options)
        sim.lift(dict(zip(species, U)), clip=clip)
        clipped[0] += sim.clipped
        return sim

    def micro_step(sim, t, h, rng):
        sim.run(h)
        return sim

    def restrict(sim):
        return sim.coverages(species)[0]

    stepper = CoarseTimeStepper(
        lift, micro_step, restrict, dt=dt, burst_time=burst_time, healing_time=healing_time,
        replicas=replicas, seed=seed, comm=comm, fit_window=fit_window,
    )
    stepper.clipped_lifts = clipped
    stepper.model = model
    return stepper


@dataclass
class SteadyCoverages:
    """Time-averaged coverages of brute-force KMC runs.

    Attributes:
        mean: Mean over replicas of the time-averaged coverages, ``(S,)`` (all species).
        standard_error: Its standard error (spread over replicas / sqrt(replicas)).
        replicas: ``(R, S)`` time averages of each replica.
        final: ``(R, S)`` coverages of each replica at the end.
        poisoned: ``(R,)`` True where the replica ended in an absorbing state (no event
            possible).
        events: Finite-rate events executed, summed over replicas.
    """

    mean: np.ndarray
    standard_error: np.ndarray
    replicas: np.ndarray
    final: np.ndarray
    poisoned: np.ndarray
    events: int


def steady_coverages(
    model: LatticeModel,
    shape,
    *,
    replicas: int,
    burn_in: float,
    window: float,
    samples: int = 20,
    seed: int = 0,
    initial: dict | None = None,
    comm: MPI.Comm | None = None,
    **kmc_options,
) -> SteadyCoverages:
    """Brute-force KMC: coverages averaged over time and replicas.

    Every replica starts from ``initial`` coverages (default: the empty lattice), runs
    ``burn_in``, then records the coverages at ``samples`` equally spaced times over
    ``window``; their time average is the replica's estimate. Replicas are independent
    lattices of one :class:`~hmm_fem.micro.kmc.KMC` (split over the ranks of ``comm`` if
    given; the result is the same on any number of ranks).

    Returns:
        The :class:`SteadyCoverages`.
    """
    if comm is not None and comm.Get_size() > 1:
        size, rank = comm.Get_size(), comm.Get_rank()
        ids = range(replicas * rank // size, replicas * (rank + 1) // size)
    else:
        ids = range(replicas)
    sim = KMC(model, shape, ids=np.arange(ids.start, ids.stop), seed=seed, **kmc_options)
    if initial:
        sim.lift(initial)
    sim.run(burn_in)
    total = np.zeros((sim.lattices, len(model.species)))
    events = 0
    for _ in range(samples):
        events += int(sim.run(window / samples).sum())
        total += sim.coverages()
    local = total / samples
    final = sim.coverages()
    poisoned = sim.total_rate() == 0
    if comm is not None and comm.Get_size() > 1:
        parts = comm.allgather((local, final, poisoned, events))
        local = np.concatenate([p[0] for p in parts])
        final = np.concatenate([p[1] for p in parts])
        poisoned = np.concatenate([p[2] for p in parts])
        events = sum(p[3] for p in parts)
    mean = local.mean(axis=0)
    if replicas > 1:
        error = local.std(axis=0, ddof=1) / math.sqrt(replicas)
    else:
        error = np.full_like(mean, np.nan)
    return SteadyCoverages(mean, error, local, final, poisoned, events)


def mean_field_steady_state(
    model: LatticeModel,
    initial,
    *,
    coordination: int = 4,
    time: float = 1e4,
    tol: float = 1e-12,
    rates=None,
    rhs: Callable | None = None,
) -> np.ndarray:
    """The steady state that the mean-field rate equations reach from ``initial``.

    Integrates ``d theta / dt = model.mean_field_rhs(theta)`` (stiff solver, LSODA) to
    ``time`` and polishes the end point by Newton's method on the rate equations.

    Args:
        model: The lattice model (finite rates).
        initial: Coverages of all species ``(S,)``.
        coordination: Neighbours per site.
        time: Integration time (long against the slowest relaxation).
        tol: Tolerance of the final Newton polish (on the rates).
        rates: Event rates instead of the model's.
        rhs: Another right-hand side ``rhs(theta)`` (for tests).

    Returns:
        ``(S,)`` steady coverages.

    Raises:
        RuntimeError: If the state is not steady at the end (``|rhs| > 1e-8``).
    """
    from scipy.integrate import solve_ivp
    from scipy.optimize import fsolve

    f = rhs or (lambda th: model.mean_field_rhs(th, coordination=coordination, rates=rates))
    sol = solve_ivp(lambda t, th: f(th), (0.0, time), np.asarray(initial, dtype=float),
                    method="LSODA", rtol=1e-10, atol=1e-12)
    theta = sol.y[:, -1]
    # Newton on S - 1 independent coverages (the sum is conserved).
    S = len(theta)

    def reduced(x):
        th = np.r_[x, 1.0 - x.sum()]
        return f(th)[: S - 1]

    x = fsolve(reduced, theta[: S - 1], xtol=tol)
    theta = np.r_[x, 1.0 - x.sum()]
    if np.abs(f(theta)).max() > 1e-8:
        raise RuntimeError(
            f"mean_field_steady_state: no steady state reached from {initial} (|rhs| = "
            f"{np.abs(f(theta)).max():.2e}); integrate longer"
        )
    return theta


def coverage_stepper_family(make_model: Callable, shape, **stepper_options) -> Callable:
    """``make_stepper(parameter)`` for :func:`~hmm_fem.equation_free.continuation`.

    Each call builds :func:`coverage_stepper` on ``make_model(parameter)`` with the same
    options (seed included). A parameter that the model rejects (``make_model`` raises
    ``ValueError``, e.g. a predictor step to ``y < 0`` in :func:`~hmm_fem.micro.kmc.zgb`)
    raises :class:`~hmm_fem.equation_free.steady.CoarseSolveError` instead, which the
    continuation treats as a failed corrector: it retries with half the step.

    Example:
        >>> family = coverage_stepper_family(
        ...     lambda y: zgb(y, reaction_rate=1.0, diffusion_rate=10.0), (32, 32),
        ...     species=["CO", "O"], dt=0.5, burst_time=2.0, replicas=8, seed=3)
        >>> branch = continuation(family, [0.06, 0.64], 0.42, 0.7, horizon=2.0, step=0.02)

    Args:
        make_model: ``make_model(parameter) -> LatticeModel``.
        shape: Lattice shape.
        **stepper_options: Keyword arguments of :func:`coverage_stepper` (``species``,
            ``dt``, ``burst_time``, ``replicas``, ``seed``, ``well_mixed``, ...).

    Returns:
        The callable ``make_stepper(parameter)``.
    """
    from ...equation_free.steady import CoarseSolveError

    if not callable(make_model):
        raise TypeError(
            f"coverage_stepper_family: make_model must be callable as make_model(parameter) "
            f"-> LatticeModel, got {type(make_model).__name__}"
        )

    def make_stepper(parameter):
        try:
            model = make_model(parameter)
        except ValueError as exc:
            raise CoarseSolveError(
                f"coverage_stepper_family: the model rejects the parameter {parameter!r}: "
                f"{exc}",
                reason="parameter outside the model's domain",
            ) from exc
        return coverage_stepper(model, shape, **stepper_options)

    return make_stepper


@dataclass
class Multiplier:
    """Coarse eigenvalue of an absorbing state along the vacancy direction.

    Attributes:
        value: ``mu``, the growth factor of the vacancy density over ``horizon`` (after
            the healing time): the poisoned state is stable for ``mu < 1``.
        standard_error: Its standard error (delta method over the lattices).
        vacancies: ``(2, B)`` vacancy densities of each lattice at the start and the end of
            the horizon.
        horizon: The horizon.
        healing_time: The healing time before it.
    """

    value: float
    standard_error: float
    vacancies: np.ndarray
    horizon: float
    healing_time: float


def absorbing_multiplier(
    model: LatticeModel,
    shape,
    *,
    species: str,
    horizon: float,
    healing_time: float = 0.0,
    dilution: float = 0.02,
    lattices: int = 16,
    seed: int = 0,
    comm: MPI.Comm | None = None,
    **kmc_options,
) -> Multiplier:
    """Coarse eigenvalue of the state poisoned by ``species``, along the vacancy direction.

    Lifts the poisoned state with a fraction ``dilution`` of vacancies at random sites,
    lets it heal for ``healing_time`` and returns the growth factor of the vacancy density
    over the next ``horizon``, ``mu = E[v(t_h + H)] / E[v(t_h)]`` (mean over ``lattices``).
    At small dilution the vacancies are far apart and grow or die independently, so the
    map is linear in the dilution: ``mu`` is the leading eigenvalue of the coarse map
    linearised at the absorbing state in that direction, whatever the shape of the active
    clusters (the healing lets the lifted isolated vacancies become the clusters of the
    dynamics). The poisoned state is stable for ``mu < 1``. At a continuous transition
    (directed percolation) the mean activity of a seed grows like a power of time, so
    ``mu(H)`` approaches 1 there slowly: the crossing of 1 approaches the transition from
    the poisoned side as the healing time and the horizon grow.

    Args:
        model: The lattice model.
        shape: Lattice shape.
        species: The poisoning species (every site holds it in the absorbing state).
        horizon: Time over which the growth is measured.
        healing_time: Time before it.
        dilution: Vacancy fraction of the lift (small: the linear regime).
        lattices: Independent lattices (replicas).
        seed: Seed.
        comm: Communicator to split the lattices over (the result does not depend on it).
        **kmc_options: Options of :class:`~hmm_fem.micro.kmc.KMC`.

    Returns:
        The :class:`Multiplier`.

    Raises:
        ValueError: On a bad dilution, horizon or species, or if every lattice is poisoned
            again after the healing time (nothing left to measure: shorten it or raise the
            dilution or the lattices).
    """
    if not 0.0 < float(dilution) < 1.0:
        raise ValueError(f"absorbing_multiplier: dilution must be in (0, 1), got {dilution!r}")
    if not float(horizon) > 0 or not float(healing_time) >= 0:
        raise ValueError(
            f"absorbing_multiplier: need horizon > 0 and healing_time >= 0, got {horizon!r}, "
            f"{healing_time!r}"
        )
    if species == model.vacancy:
        raise ValueError("absorbing_multiplier: the poisoning species cannot be the vacancy")
    model.code(species)
    if isinstance(lattices, bool) or int(lattices) < 2:
        raise ValueError(f"absorbing_multiplier: need at least 2 lattices, got {lattices!r}")
    ids = np.arange(int(lattices))
    if comm is not None and comm.Get_size() > 1:
        size, rank = comm.Get_size(), comm.Get_rank()
        ids = ids[int(lattices) * rank // size: int(lattices) * (rank + 1) // size]
    sim = KMC(model, shape, ids=ids, seed=seed, **kmc_options)
    sim.lift({species: 1.0 - float(dilution)})
    vac = model.code(model.vacancy)
    if healing_time > 0:
        sim.run(float(healing_time))
    start = sim.coverages()[:, vac].copy()
    sim.run(float(horizon))
    end = sim.coverages()[:, vac].copy()
    if comm is not None and comm.Get_size() > 1:
        start = np.concatenate(comm.allgather(start))
        end = np.concatenate(comm.allgather(end))
    if start.mean() == 0:
        raise ValueError(
            f"absorbing_multiplier: every lattice is poisoned again after healing_time = "
            f"{healing_time:g}; shorten the healing time or raise the dilution or the lattices"
        )
    mu = end.mean() / start.mean()
    # Delta method for a ratio of means: the variance of (end - mu start) over the lattices.
    B = len(start)
    standard_error = float(np.std(end - mu * start, ddof=1) / math.sqrt(B) / start.mean())
    return Multiplier(float(mu), standard_error, np.array([start, end]), float(horizon),
                      float(healing_time))


def zgb_mean_field_states(y: float, *, reaction_rate: float = 1.0, coordination: int = 4):
    """The reactive steady states of the mean-field ZGB rate equations, in closed form.

    With ``zgb(y, reaction_rate=k)`` and ``z`` neighbours per site the rate equations
    (:meth:`~hmm_fem.micro.kmc.LatticeModel.mean_field_rhs`) are
    ``d theta_CO / dt = y theta_* - k z theta_CO theta_O`` and
    ``d theta_O / dt = (1 - y) (z / 2) theta_*^2 - k z theta_CO theta_O``. A reactive steady
    state has ``theta_* = 2 y / (z (1 - y))``, ``theta_CO + theta_O = 1 - theta_* = s`` and
    ``theta_CO theta_O = y theta_* / (k z) = p``: ``theta_CO = (s -+ sqrt(s^2 - 4 p)) / 2``.
    The smaller ``theta_CO`` is the stable state, the larger the saddle (unstable); they
    meet at the fold ``s^2 = 4 p`` (:func:`zgb_mean_field_fold`), beyond which only the
    CO-poisoned state is left.

    Args:
        y: CO fraction.
        reaction_rate: ``k`` (finite).
        coordination: ``z``.

    Returns:
        ``(stable, unstable)``, coverages of ``("*", "CO", "O")`` each, or ``(None, None)``
        beyond the fold.
    """
    k, z = float(reaction_rate), float(coordination)
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"zgb_mean_field_states: reaction_rate must be finite > 0, got {k!r}")
    if not 0.0 < y < 1.0:
        raise ValueError(f"zgb_mean_field_states: y must be in (0, 1), got {y!r}")
    empty = 2.0 * y / (z * (1.0 - y))
    s, p = 1.0 - empty, y * empty / (k * z)
    discriminant = s * s - 4.0 * p
    if empty >= 1.0 or discriminant < 0:
        return None, None
    root = math.sqrt(discriminant)
    low, high = 0.5 * (s - root), 0.5 * (s + root)
    return np.array([empty, low, s - low]), np.array([empty, high, s - high])


def zgb_mean_field_fold(*, reaction_rate: float = 1.0, coordination: int = 4):
    """The fold (saddle-node) of the mean-field ZGB rate equations with a finite rate ``k``.

    Where the discriminant of :func:`zgb_mean_field_states` vanishes:
    ``(1 - theta_*)^2 = 4 y theta_* / (k z)`` with ``theta_* = 2 y / (z (1 - y))``; there
    ``theta_CO = theta_O = (1 - theta_*) / 2``. At ``k = 1``, ``z = 4``: ``y = 1/2``,
    ``theta = (1/2, 1/4, 1/4)`` exactly.

    Returns:
        ``(y_fold, theta)`` with the coverages of ``("*", "CO", "O")`` there.
    """
    from scipy.optimize import brentq

    k, z = float(reaction_rate), float(coordination)
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"zgb_mean_field_fold: reaction_rate must be finite > 0, got {k!r}")

    def discriminant(y):
        empty = 2.0 * y / (z * (1.0 - y))
        return (1.0 - empty) ** 2 - 4.0 * y * empty / (k * z)

    # Positive at y -> 0, negative where theta_* reaches 1 (y = z / (z + 2)).
    y_fold = brentq(discriminant, 1e-12, z / (z + 2.0), xtol=1e-15, rtol=1e-15)
    empty = 2.0 * y_fold / (z * (1.0 - y_fold))
    return float(y_fold), np.array([empty, 0.5 * (1 - empty), 0.5 * (1 - empty)])


def mean_field_multipliers(
    model: LatticeModel,
    theta,
    *,
    species: Sequence[str],
    horizon: float,
    coordination: int = 4,
) -> np.ndarray:
    """Exact eigenvalues of the coarse map of the mean-field flow, linearised at ``theta``.

    The coarse state is the coverages of ``species`` (the vacancy takes the rest); the
    Jacobian ``J`` of the rate equations in those coordinates is exact by central
    differences (the right-hand side is quadratic), and the time-``horizon`` map has the
    eigenvalues ``exp(horizon * eig(J))``: what
    :func:`~hmm_fem.equation_free.coarse_eigenvalues` estimates from the well-mixed KMC.

    Args:
        model: The model (finite rates).
        theta: Coverages of all species ``(S,)``.
        species: The coarse species (not the vacancy).
        horizon: Horizon of the coarse map.
        coordination: Neighbours per site.

    Returns:
        Complex eigenvalues, largest magnitude first.
    """
    theta = np.asarray(theta, dtype=float)
    codes = [model.code(name) for name in species]
    vac = model.code(model.vacancy)
    if vac in codes:
        raise ValueError("mean_field_multipliers: the vacancy cannot be a coarse species")

    def reduced(x):
        full = theta.copy()
        full[codes] = x
        full[vac] = theta[vac] + theta[codes].sum() - x.sum()
        return model.mean_field_rhs(full, coordination=coordination)[codes]

    x0 = theta[codes]
    h = 1e-3  # exact for a quadratic: the error is round-off only
    J = np.column_stack([
        (reduced(x0 + h * e) - reduced(x0 - h * e)) / (2 * h) for e in np.eye(len(codes))
    ])
    values = np.exp(float(horizon) * np.linalg.eigvals(J))
    return values[np.argsort(-np.abs(values), kind="stable")]
