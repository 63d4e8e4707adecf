"""Fast processes, vectorised over a batch of replicas, for the HMM estimators.

A fast process is any callable ``fast_step(y, x, t, dt, rng)`` that advances the fast
states ``y`` of a batch of ``n`` replicas (an array whose first axis is the replica) by one
micro step ``dt`` with the slow state ``x`` (shape ``(m,)``) and the macro time ``t``
frozen, drawing its random numbers from the generator ``rng`` of the batch, and returns
the new states (it may update ``y`` in place). Two are ready-made:

* :class:`EulerMaruyama`: ``dy = a(y, x, t) ds + b(y, x, t) dW``, one Euler–Maruyama
  step for all replicas at once;
* :class:`ReactionNetwork`: a continuous-time Markov jump process (a chemical reaction
  network, Gillespie's direct method), every replica advanced by exactly ``dt``; the loop
  runs over *events*, each event handled for all the replicas still inside the step at
  once (no Python object per reaction channel or per replica).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["EulerMaruyama", "ReactionNetwork"]


class EulerMaruyama:
    """One Euler–Maruyama step of ``dy = a(y, x, t) ds + b(y, x, t) dW`` for all replicas.

    ``y`` has shape ``(n, d)`` (``n`` replicas, ``d`` fast components); ``x`` (the frozen
    slow state) and ``t`` (the frozen macro time) are passed through to the coefficients.
    The step is ``y + a dt + b sqrt(dt) xi`` with standard normal ``xi`` drawn from the
    batch's generator (weak order 1: stationary averages carry an ``O(dt)`` bias; resolve
    the fastest time scale of ``a`` with ``dt``).

    Example:
        An Ornstein–Uhlenbeck process relaxing to the slow variable on the time scale
        ``eps``::

            fast = EulerMaruyama(drift=lambda y, x, t: -(y - x) / eps,
                                 diffusion=eps ** -0.5)

    Args:
        drift: ``a(y, x, t)``, returns ``(n, d)``.
        diffusion: The noise: a number (additive noise of that intensity on every
            component), an array of shape ``(d,)`` (additive, per component), or a callable
            ``b(y, x, t)`` returning ``(n, d)`` (diagonal, multiplicative) or ``(n, d, k)``
            (a full matrix driven by ``k`` independent Wiener processes).

    Raises:
        TypeError: If ``drift`` is not callable.
        ValueError: If a constant ``diffusion`` is not finite.
    """

    def __init__(self, drift: Callable, diffusion):
        if not callable(drift):
            raise TypeError(f"drift must be callable a(y, x, t), got {type(drift).__name__}")
        self.drift = drift
        if callable(diffusion):
            self.diffusion, self._constant = diffusion, None
        else:
            constant = np.asarray(diffusion, dtype=np.float64)
            if constant.ndim > 1 or not np.all(np.isfinite(constant)):
                raise ValueError(
                    "a constant diffusion must be a finite number or a (d,) array of the "
                    f"per-component intensities, got {diffusion!r}"
                )
            self.diffusion, self._constant = None, constant

    def __call__(self, y, x, t, dt, rng):
        """``y`` after one step of size ``dt`` (a new array)."""
        y = np.asarray(y, dtype=np.float64)
        a = np.asarray(self.drift(y, x, t), dtype=np.float64)
        if a.shape != y.shape:
            raise ValueError(
                f"EulerMaruyama: drift returned shape {a.shape} for fast states of shape "
                f"{y.shape}; it must return one drift per replica and component"
            )
        root = np.sqrt(dt)
        if self._constant is not None:
            return y + dt * a + (self._constant * root) * rng.standard_normal(y.shape)
        b = np.asarray(self.diffusion(y, x, t), dtype=np.float64)
        if b.shape == y.shape:
            return y + dt * a + root * b * rng.standard_normal(y.shape)
        if b.ndim == y.ndim + 1 and b.shape[:-1] == y.shape:
            noise = rng.standard_normal((*y.shape[:-1], b.shape[-1]))
            return y + dt * a + root * np.einsum("...ij,...j->...i", b, noise)
        raise ValueError(
            f"EulerMaruyama: diffusion returned shape {b.shape} for fast states of shape "
            f"{y.shape}; expected {y.shape} (diagonal) or {(*y.shape, 'k')} (matrix)"
        )


class ReactionNetwork:
    """A Markov jump process (reaction network), every replica advanced by exactly ``dt``.

    The state ``y`` holds the copy numbers, shape ``(n, d)``. Reaction ``j`` fires at the
    rate ``propensities(y, x, t)[:, j]`` and changes the state by ``stoichiometry[j]``.
    Each call runs Gillespie's direct method (Gillespie, J. Phys. Chem. 81, 1977) for all
    replicas at once: one pass of the loop draws the next event of every replica still
    inside the step (an exponential waiting time with the total rate, then the channel in
    proportion to its rate), and a replica whose next event falls beyond ``dt`` leaves the
    loop. Because waiting times are memoryless, stopping at ``dt`` and drawing afresh in
    the next step is exact, so the sampled path is the continuous-time process observed at
    multiples of ``dt``. The passes of the loop number the most events of any replica in
    the step: choose ``dt`` of the order of a few mean waiting times.

    Example:
        Birth and death of a protein, ``0 -> P`` at the rate ``k0 V`` (``V`` the slow
        variable) and ``P -> 0`` at ``gamma P``::

            network = ReactionNetwork(
                stoichiometry=[[+1], [-1]],
                propensities=lambda y, x, t: np.column_stack(
                    [np.full(len(y), k0 * x[0]), gamma * y[:, 0]]))

    Args:
        stoichiometry: State change of each reaction, shape ``(r, d)``.
        propensities: ``propensities(y, x, t)`` returns the ``(n, r)`` non-negative rates
            of the ``n`` given replicas.

    Raises:
        ValueError: If the stoichiometry is not a finite ``(r, d)`` array.
    """

    def __init__(self, stoichiometry, propensities: Callable):
        nu = np.asarray(stoichiometry, dtype=np.float64)
        if nu.ndim != 2 or nu.shape[0] < 1 or not np.all(np.isfinite(nu)):
            raise ValueError(
                "stoichiometry must be a finite (reactions, species) array, got shape "
                f"{nu.shape}"
            )
        if not callable(propensities):
            raise TypeError("propensities must be callable propensities(y, x, t) -> (n, r)")
        self.stoichiometry = nu
        self.propensities = propensities
        #: Events fired so far by this object (on this rank): a measure of the work.
        self.events = 0

    def __call__(self, y, x, t, dt, rng):
        """``y`` after the process has run for ``dt`` in every replica (a new array)."""
        y = np.array(y, dtype=np.float64)
        reactions, species = self.stoichiometry.shape
        if y.ndim != 2 or y.shape[1] != species:
            raise ValueError(
                f"ReactionNetwork: fast states of shape {y.shape}, expected (n, {species}) "
                "for its stoichiometry"
            )
        clock = np.zeros(len(y))
        active = np.arange(len(y))
        while active.size:
            rates = np.asarray(self.propensities(y[active], x, t), dtype=np.float64)
            if rates.shape != (active.size, reactions):
                raise ValueError(
                    f"ReactionNetwork: propensities returned shape {rates.shape} for "
                    f"{active.size} replicas, expected ({active.size}, {reactions})"
                )
            if np.any(rates < 0) or not np.all(np.isfinite(rates)):
                raise ValueError(
                    "ReactionNetwork: propensities must be finite and non-negative; got "
                    f"{rates[~(np.isfinite(rates) & (rates >= 0)).any(axis=1)][:1]} at the "
                    f"state {y[active][~(np.isfinite(rates) & (rates >= 0)).any(axis=1)][:1]}"
                )
            cumulative = np.cumsum(rates, axis=1)
            total = cumulative[:, -1]
            wait = rng.standard_exponential(active.size)
            pick = rng.random(active.size)
            with np.errstate(divide="ignore"):
                clock[active] += np.where(total > 0, wait / total, np.inf)
            fires = clock[active] <= dt
            if not fires.any():
                break
            channel = (cumulative[fires] <= (pick[fires] * total[fires])[:, None]).sum(axis=1)
            channel = np.minimum(channel, reactions - 1)  # pick * total rounds to total
            y[active[fires]] += self.stoichiometry[channel]
            self.events += int(fires.sum())
            active = active[fires]
        return y
