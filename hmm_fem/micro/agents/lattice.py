"""Random walkers that proliferate with a crowding limit, as occupancy counts on a lattice.

**The model.** Agents (cells) live on the sites of a square lattice of spacing ``a`` in
``d = 1`` or ``2`` dimensions; a site holds any number ``n`` of them. Time runs in steps of
length ``tau``. In one step every agent, independently,

* divides with probability ``r tau (1 - n/K)_+`` (logistic crowding: ``n`` is the number of
  agents on its site at the start of the step, ``K`` the carrying capacity of a site); the
  daughter is placed on the mother's site and moves from the next step on;
* hops with probability ``p`` (the hop probability) to one of its ``2d`` nearest
  neighbours, chosen uniformly, and stays with probability ``1 - p``. At a wall
  (the end of the lattice) a hop out of the lattice is refused: the agent stays (a
  reflecting, no-flux wall).

The step length is ``tau = p a^2 / (2 d D)`` for the diffusivity ``D``. Agents are counts per
site: a step is a few binomial draws per site (the ``2d + 1`` choices of the ``n`` agents of
a site, split by sequential binomials), vectorised over all sites of any number of
independent lattices (patches, replicas); no Python object per agent, and the cost per
step does not depend on ``K``.

**The mean-field limit is the Fisher–KPP equation.** Let ``c_i = E[n_i]``. The expected
change of site ``i`` in one step is

    E[n_i' - n_i | n] = (p / 2d) sum_{j ~ i} (n_j - n_i) + r tau n_i (1 - n_i/K)_+

(the hops out of ``i`` remove ``p n_i`` on average and every neighbour ``j`` sends
``p n_j / 2d``; the births add ``r tau n_i (1 - n_i/K)`` while ``n_i <= K``). Taking the
expectation and closing ``E[n_i^2] = c_i^2`` (the mean-field closure: neglecting the
variance of a site, whose relative size is ``O(1/c_i)``, so it vanishes as ``K -> oo``)
gives the lattice equation

    (c_i' - c_i) / tau = (p a^2 / 2 d tau) Delta_a c_i + r c_i (1 - c_i/K),

with ``Delta_a`` the standard ``(2d + 1)``-point Laplacian of spacing ``a``. With the
density ``u = c / K`` (in units of the carrying capacity) and ``D = p a^2 / (2 d tau)``,
the limit ``a -> 0``, ``tau -> 0`` (``D`` fixed) is

    u_t = D Delta u + r u (1 - u),

the Fisher–KPP equation: its fronts into ``u = 0`` travel at ``2 sqrt(D r)``. The
corrections are ``O(a^2)`` (the lattice Laplacian), ``O(r tau)`` (the time step) and the
noise: at finite ``K`` a front is slower by about ``pi^2 sqrt(D r) / (ln N)^2`` (Brunet &
Derrida, Phys. Rev. E 56, 1997), ``N`` the number of agents in a length ``sqrt(D/r)`` of
the saturated tissue; the counts make a large ``K`` cost nothing. A reflecting wall is the
no-flux condition: the lattice sites sit at the centres of cells of side ``a``, so the
wall is the mirror plane half a spacing beyond the last site.

**Patches** (:meth:`LatticeWalkers.run_patches`): a patch is a small lattice of ``m^d``
*core* sites inside a frame of one site on every side (the frame is a particle
reservoir). It is lifted from a density ``u`` and gradient ``g`` at its centre: every site
at offset ``x`` gets Poisson(``K (u + g.x)_+``) agents, the stationary distribution of
independent walkers between two reservoirs at the densities of the linear profile. During
the burst the frame is redrawn from the same distribution after every step, so the core
is held at the local density and gradient (a Dirichlet condition for agents). The patch
returns, averaged over the burst:

* the **growth rate** ``R``: births per unit time and measure over the core, in units of
  the carrying capacity (mean field: ``r u (1 - u)``);
* the **flux** ``J``: net agents crossing per unit time and cross-section, along each axis,
  over the bonds of the core rows (mean field: ``-D g``).

Both are conditional-expectation (Rao–Blackwellised) estimators: per step the expected
births ``r tau n (1 - n/K)_+`` of every core site and the expected net hops ``(p/2d)
(n_i - n_j)`` across every bond, given the sampled configuration. Their means are those
of the counted births and crossings (the counted events minus these are martingales), at a
lower variance. Every patch runs ``replicas`` independent copies; the estimates are their
means and the standard errors their spread over ``sqrt(replicas)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["LatticeWalkers", "PatchEstimate", "LatticeDNS", "lift_patches"]


def _positive(value, name: str) -> float:
    if not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_states(density, gradient, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n,)`` densities and ``(n, dim)`` gradients of patches, checked finite."""
    u = np.asarray(density, dtype=float).reshape(-1)
    g = np.asarray(gradient, dtype=float)
    if g.size != u.size * dim:
        raise ValueError(
            f"gradient must have shape (n, {dim}) for {u.size} patches in {dim}D, got {g.shape}"
        )
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(g))):
        raise ValueError("the densities and gradients of the patches must be finite")
    return u, g.reshape(len(u), dim)


def lift_patches(density, gradient, spacing, core_sites, capacity, replicas, rng):
    """Poisson counts of the linear profiles of patches, and their means.

    Every site at offset ``x`` from the patch centre gets Poisson(``K (u + g.x)_+``)
    agents: the stationary law of independent walkers between reservoirs at the densities
    of the linear profile (a density cannot be negative: the profile's positive part).

    Args:
        density: ``(n,)`` densities at the centres (units of the capacity ``K``).
        gradient: ``(n, d)`` gradients.
        spacing: Lattice spacing.
        core_sites: Core sites ``m`` per axis (``m + 2`` with the frame).
        capacity: ``K``.
        replicas: Copies of every patch.
        rng: The generator.

    Returns:
        ``(n * replicas, m + 2, ...)`` counts (replica ``k`` of patch ``i`` is row
        ``i * replicas + k``) and their means.
    """
    u = np.asarray(density, dtype=float)
    g = np.asarray(gradient, dtype=float)
    d = g.shape[1]
    side = (np.arange(core_sites + 2) - (core_sites + 1) / 2) * spacing
    offsets = np.stack(np.meshgrid(*([side] * d), indexing="ij"), axis=-1).reshape(-1, d)
    profile = u[:, None] + g @ offsets.T
    shape = (len(u),) + (core_sites + 2,) * d
    means = np.repeat(capacity * np.maximum(profile, 0.0).reshape(shape), replicas, axis=0)
    return rng.poisson(means), means


@dataclass
class PatchEstimate:
    """What a burst of patches measured.

    Attributes:
        rate: ``(n,)`` time-averaged net proliferation rate per unit measure, in units of
            the carrying capacity density per unit time.
        flux: ``(n, d)`` time-averaged agent flux, in the same units times a length.
        rate_error: ``(n,)`` standard error of ``rate`` (spread over the replicas).
        flux_error: ``(n, d)`` standard error of ``flux``.
        site_updates: Work of the burst: lattice sites times micro steps, over all patches
            and replicas.
    """

    rate: np.ndarray
    flux: np.ndarray
    rate_error: np.ndarray
    flux_error: np.ndarray
    site_updates: int = 0

    @classmethod
    def from_replicas(cls, births, crossings, *, time, core_sites, dim, spacing, capacity,
                      replicas, site_updates) -> PatchEstimate:
        """The estimate from counted births and bond crossings of every patch replica.

        Args:
            births: ``(n * replicas,)`` births in the core over the burst (or their
                expectations), replicas of a patch consecutive.
            crossings: ``(n * replicas, d)`` net agents that crossed the core's bonds along
                each axis over the burst.
            time: Length of the burst.
            core_sites: Core sites ``m`` per axis.
            dim: Dimension ``d``.
            spacing: Lattice spacing ``a``.
            capacity: The density unit ``K`` (agents per site at density 1).
            replicas: Replicas per patch (>= 2).
            site_updates: Work of the burst (lattice sites times micro steps).

        Returns:
            Means over the replicas of the rate per unit measure and of the flux (crossings
            per bond, times ``a``, per unit time), with their standard errors.
        """
        m, d = core_sites, dim
        rate = np.asarray(births, dtype=float) / (time * m**d * capacity)
        bonds = (m + 1) * m ** (d - 1)
        flux = np.asarray(crossings, dtype=float) * spacing / (time * bonds * capacity)
        rate = rate.reshape(-1, replicas)
        flux = flux.reshape(rate.shape[0], replicas, d)
        root = math.sqrt(replicas)
        return cls(
            rate=rate.mean(axis=1),
            flux=flux.mean(axis=1),
            rate_error=rate.std(axis=1, ddof=1) / root,
            flux_error=flux.std(axis=1, ddof=1) / root,
            site_updates=int(site_updates),
        )


class LatticeWalkers:
    """Proliferating random walkers with logistic crowding, as counts on a square lattice.

    See the module docstring for the model, its mean-field (Fisher–KPP) limit and the
    patches.

    Example:
        >>> import numpy as np
        >>> walkers = LatticeWalkers(dim=1, spacing=0.05, diffusivity=1.0,
        ...                          proliferation_rate=1.0, capacity=1000,
        ...                          core_sites=4, burst_time=0.01)
        >>> estimate = walkers.run_patches([0.5], [[0.0]], np.random.default_rng(1))
        >>> bool(abs(estimate.rate[0] - 0.25) < 5 * estimate.rate_error[0] + 0.01)
        True

    Args:
        dim: Dimension of the lattice (1 or 2).
        spacing: Lattice spacing ``a``.
        diffusivity: Diffusivity ``D`` of a walker.
        proliferation_rate: Division rate ``r`` of an isolated agent.
        capacity: Carrying capacity ``K`` of a site (agents; need not be an integer).
        hop_probability: Probability ``p`` that an agent hops in a step (0 < p <= 1; the
            default 1/2 avoids the even/odd decoupling of a walk that always hops).
        core_sites: Core sites ``m`` of a patch along each axis (the patch has ``m + 2``
            sites per axis with its frame).
        burst_time: Length of a patch burst (rounded to whole steps, at least one).
        replicas: Independent copies of every patch (>= 2 for a standard error).

    Attributes:
        time_step: The step length ``tau = p a^2 / (2 d D)``.
        burst_steps: Micro steps in a burst.
        patch_width: Side of a patch, frame included: ``(m + 2) a``.
        patch_measure: ``patch_width**dim``.
    """

    def __init__(
        self,
        dim: int,
        spacing: float,
        diffusivity: float,
        proliferation_rate: float,
        capacity: float,
        *,
        hop_probability: float = 0.5,
        core_sites: int = 4,
        burst_time: float | None = None,
        replicas: int = 2,
    ):
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim!r}")
        self.dim = int(dim)
        self.spacing = _positive(spacing, "spacing")
        self.diffusivity = _positive(diffusivity, "diffusivity")
        self.proliferation_rate = _positive(proliferation_rate, "proliferation_rate")
        self.capacity = _positive(capacity, "capacity")
        p = _positive(hop_probability, "hop_probability")
        if p > 1:
            raise ValueError(f"hop_probability must be in (0, 1], got {hop_probability}")
        self.hop_probability = p
        self.core_sites = _count(core_sites, "core_sites")
        self.replicas = _count(replicas, "replicas", 2)
        self.time_step = p * self.spacing**2 / (2 * self.dim * self.diffusivity)
        if self.proliferation_rate * self.time_step > 0.1:
            raise ValueError(
                f"r tau = {self.proliferation_rate * self.time_step:.3g} > 0.1: the time step "
                f"tau = p a^2/(2 d D) = {self.time_step:.3g} is too long for the division "
                "rate; refine the lattice spacing"
            )
        if burst_time is None:
            burst_time = 10 * self.time_step
        self.burst_time = _positive(burst_time, "burst_time")
        self.burst_steps = max(1, round(self.burst_time / self.time_step))
        self.patch_width = (self.core_sites + 2) * self.spacing
        self.patch_measure = self.patch_width**self.dim

    # -- the micro step ----------------------------------------------------------------------
    def step(self, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One step of independent lattices with reflecting walls.

        Args:
            counts: ``(B, *lattice)`` non-negative integer counts of ``B`` lattices (the last
                ``dim`` axes are the lattice).
            rng: The generator to draw from.

        Returns:
            The counts after the step (a new array).
        """
        n = counts
        crowding = np.clip(1.0 - n / self.capacity, 0.0, 1.0)
        births = rng.binomial(n, self.proliferation_rate * self.time_step * crowding)
        # The 2d moves of the n agents of a site: sequential binomials of a multinomial.
        q = self.hop_probability / (2 * self.dim)
        remaining = n.copy()
        new = births
        for k in range(2 * self.dim):
            moved = rng.binomial(remaining, q / (1.0 - k * q))
            remaining -= moved
            axis = counts.ndim - self.dim + k // 2
            new += self._shift(moved, axis, +1 if k % 2 == 0 else -1)
        return new + remaining

    @staticmethod
    def _shift(moved: np.ndarray, axis: int, direction: int) -> np.ndarray:
        """Where ``moved`` agents land after one hop along ``axis``; walls send them back."""
        out = np.zeros_like(moved)
        src = [slice(None)] * moved.ndim
        dst = [slice(None)] * moved.ndim
        wall = [slice(None)] * moved.ndim
        if direction > 0:
            src[axis], dst[axis], wall[axis] = slice(None, -1), slice(1, None), slice(-1, None)
        else:
            src[axis], dst[axis], wall[axis] = slice(1, None), slice(None, -1), slice(None, 1)
        out[tuple(dst)] = moved[tuple(src)]
        out[tuple(wall)] += moved[tuple(wall)]
        return out

    # -- the mean-field limit ----------------------------------------------------------------
    def mean_field(self, density, gradient):
        """The Fisher–KPP rate ``r u (1 - u)`` and flux ``-D g`` of the mean-field limit."""
        u = np.asarray(density, dtype=float)
        return self.proliferation_rate * u * (1 - u), -self.diffusivity * np.asarray(gradient)

    def mean_field_tangent(self, density):
        """Derivatives of the mean-field law: ``r (1 - 2u)`` and ``-D I`` (``(n, d, d)``)."""
        u = np.asarray(density, dtype=float).reshape(-1)
        flux = -self.diffusivity * np.broadcast_to(np.eye(self.dim), (len(u), self.dim, self.dim))
        return self.proliferation_rate * (1 - 2 * u), flux

    def front_speed(self) -> float:
        """The Fisher–KPP front speed ``2 sqrt(D r)`` of the mean-field limit."""
        return 2.0 * math.sqrt(self.diffusivity * self.proliferation_rate)

    # -- patches -------------------------------------------------------------------------------
    def lift(self, density, gradient, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Patches drawn at density ``u`` with gradient ``g``: ``(counts, means)``.

        See :func:`lift_patches`.
        """
        u, g = self._check_states(density, gradient)
        return lift_patches(u, g, self.spacing, self.core_sites, self.capacity, self.replicas, rng)

    def _check_states(self, density, gradient):
        return check_states(density, gradient, self.dim)

    def run_patches(self, density, gradient, rng: np.random.Generator) -> PatchEstimate:
        """Lift patches, run one burst (frames held), and measure growth rate and flux.

        Args:
            density: ``(n,)`` densities at the patch centres (units of the capacity;
                negative values are lifted as 0: a density cannot be negative).
            gradient: ``(n, dim)`` density gradients there.
            rng: The generator (all patches of the call draw from it).

        Returns:
            The :class:`PatchEstimate`.
        """
        self._check_states(density, gradient)
        counts, means = self.lift(density, gradient, rng)
        d, m = self.dim, self.core_sites
        frame = np.ones(means.shape[1:], dtype=bool)
        frame[(slice(1, -1),) * d] = False
        frame_means = means[:, frame]
        core = (slice(None),) + (slice(1, -1),) * d
        births = np.zeros(len(counts))
        crossings = np.zeros((len(counts), d))
        for _ in range(self.burst_steps):
            inner = counts[core]
            births += (
                (inner * np.clip(1.0 - inner / self.capacity, 0.0, 1.0))
                .reshape(len(counts), -1)
                .sum(axis=1)
            )
            for axis in range(d):
                # Bonds along `axis` between neighbouring sites of the core rows (the rows
                # through the core along the other axes), frame-core bonds included.
                rows = [slice(None)] + [slice(1, -1)] * d
                rows[1 + axis] = slice(None)
                line = counts[tuple(rows)]
                diff = np.diff(line, axis=1 + axis)
                crossings[:, axis] -= diff.reshape(len(counts), -1).sum(axis=1)
            counts = self.step(counts, rng)
            counts[:, frame] = rng.poisson(frame_means)
        # `births` sums n (1 - n/K)_+ and `crossings` the density differences across the
        # bonds over the steps: times r tau and p/(2d) = D tau / a^2 they are the expected
        # births and net hops of the burst.
        steps = self.burst_steps
        return PatchEstimate.from_replicas(
            self.proliferation_rate * self.time_step * births,
            self.diffusivity * self.time_step * crossings / self.spacing**2,
            time=steps * self.time_step, core_sites=m, dim=d, spacing=self.spacing,
            capacity=self.capacity, replicas=self.replicas,
            site_updates=steps * counts[0].size * len(counts),
        )


class LatticeDNS:
    """The full agent simulation of a box (the reference of the patch schemes).

    The box ``[0, L_0] x ... `` is tiled by cells of side ``a`` with a lattice site at
    every centre; the walls reflect (no flux). Several replicas run at once.

    Args:
        walkers: The :class:`LatticeWalkers` (its lattice spacing, rates, capacity).
        lengths: Side lengths of the box (each a whole number of spacings).
        initial_density: Callable ``f(x)`` of ``(num_sites, dim)`` site positions giving the
            initial density in units of the capacity (sites draw Poisson counts of mean
            ``K f(x)``).
        rng: The generator.
        replicas: Independent runs.

    Attributes:
        counts: ``(replicas, *sites)`` counts.
        time: Simulated time.
        positions: ``(*sites, dim)`` site positions.
        site_updates: Work so far (sites times steps, over the replicas).
    """

    def __init__(self, walkers: LatticeWalkers, lengths, initial_density, rng, replicas=1):
        self.walkers = walkers
        lengths = np.atleast_1d(np.asarray(lengths, dtype=float))
        if lengths.shape != (walkers.dim,):
            raise ValueError(f"lengths must give {walkers.dim} side length(s), got {lengths}")
        sites = np.round(lengths / walkers.spacing).astype(int)
        if np.any(sites < 2) or not np.allclose(sites * walkers.spacing, lengths, rtol=1e-9):
            raise ValueError(
                f"the box sides {lengths} must be whole numbers (>= 2) of the spacing "
                f"{walkers.spacing}"
            )
        self.lengths = lengths
        axes = [(np.arange(s) + 0.5) * walkers.spacing for s in sites]
        self.positions = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        density = np.asarray(initial_density(self.positions.reshape(-1, walkers.dim)), float)
        if density.shape != (self.positions[..., 0].size,) or np.any(density < 0):
            raise ValueError("initial_density must return one density >= 0 per site")
        self.rng = rng
        mean = walkers.capacity * density.reshape(tuple(sites))
        self.counts = rng.poisson(np.broadcast_to(mean, (_count(replicas, "replicas"), *sites)))
        self.time = 0.0
        self.site_updates = 0

    def run(self, duration: float) -> None:
        """Advance by ``duration`` (rounded to whole steps)."""
        steps = round(duration / self.walkers.time_step)
        for _ in range(steps):
            self.counts = self.walkers.step(self.counts, self.rng)
        self.time += steps * self.walkers.time_step
        self.site_updates += steps * self.counts.size

    def density(self) -> np.ndarray:
        """``(replicas, *sites)`` densities in units of the capacity."""
        return self.counts / self.walkers.capacity

    def mass(self) -> np.ndarray:
        """``(replicas,)`` integral of the density over the box."""
        a = self.walkers.spacing
        return self.density().reshape(len(self.counts), -1).sum(axis=1) * a**self.walkers.dim
