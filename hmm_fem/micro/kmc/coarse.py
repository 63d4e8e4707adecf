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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from .engine import KMC
from .model import LatticeModel

__all__ = ["coverage_stepper", "steady_coverages", "SteadyCoverages", "mean_field_steady_state"]


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
