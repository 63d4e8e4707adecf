"""A Mesa model as the patch simulator: bring an agent-based model written with Mesa.

`Mesa <https://mesa.readthedocs.io>`_ is Python's agent-based modelling library: a model is
a ``mesa.Model`` whose agents (Python objects) live in a space and act at every
``model.step()``. :class:`MesaPatches` runs such a model in the patches of
:class:`hmm_fem.micro.agents.AgentPatchModel`, behind the same interface as the vectorised
:class:`~hmm_fem.micro.agents.LatticeWalkers`:

* **lift**: a fresh model per patch and replica, built by the user's factory on a lattice of
  ``(m + 2)^d`` sites (``m`` core sites per axis inside a frame of one site); the adapter
  creates ``Poisson(K (u + g.x)_+)`` agents on every site (``model.add_agent(site)``);
* **micro step**: ``model.step()``, one step of length ``time_step``;
* **frame**: after every step the agents on the frame are removed and new ones created from
  the same distribution, so the frame is a reservoir at the lifted density and gradient;
* **restriction**: the agents' lattice positions, read before and after each step: the
  births are the agents that appeared on core sites (their ``unique_id`` was not there
  before), the flux the net number of lattice bonds that agents of the core rows crossed,
  per axis. These are counted events (the adapter does not know the model's rates), so
  their noise is larger than that of the walkers' conditional expectations, but the means
  are the same.

What the model must provide (:class:`MesaWalkers` is an example):

* a factory ``factory(shape, rng)`` -> model, ``shape`` the lattice sites per axis and
  ``rng`` a seed for ``mesa.Model(rng=...)``;
* ``model.add_agent(site)``: create one agent at the lattice site (a tuple of indices);
* ``model.agents``: the Mesa agent set; each agent's site is read by ``position(agent)``
  (default: ``agent.cell.coordinate`` for Mesa's discrete spaces, else ``agent.pos``) and it
  is removed by ``agent.remove()``;
* ``model.step()``.

Mesa agents are Python objects, so a patch costs about a microsecond or more per agent and
step: use it for models with few agents per site, or to validate a vectorised version
(``tests/test_agents.py`` checks that :class:`MesaWalkers` and
:class:`~hmm_fem.micro.agents.LatticeWalkers` give the same growth rate).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .lattice import LatticeWalkers, PatchEstimate, _count, _positive, check_states, lift_patches

__all__ = ["MesaPatches", "MesaWalkers"]


def _default_position(agent):
    cell = getattr(agent, "cell", None)
    if cell is not None:
        return cell.coordinate
    return agent.pos


class MesaPatches:
    """Patches of a Mesa model: lift, ``model.step()``, restriction (see the module docstring).

    Args:
        factory: ``factory(shape, rng) -> model`` building an empty Mesa model on a lattice
            of ``shape`` sites.
        dim: Dimension of the lattice (1 or 2).
        spacing: Lattice spacing ``a``.
        capacity: The density unit ``K``: agents per site at density 1.
        time_step: Length of one ``model.step()``.
        core_sites: Core sites ``m`` per axis (the patch has ``m + 2`` with its frame).
        burst_time: Length of a burst (rounded to whole steps, at least one).
        replicas: Independent copies of every patch (>= 2 for a standard error).
        position: ``position(agent) -> tuple`` of lattice indices (default: see above).
        diffusivity, proliferation_rate: The model's mean-field ``D`` and ``r``, if known:
            they give the tangent of :class:`~hmm_fem.micro.agents.AgentPatchModel`.

    Attributes:
        patch_width, patch_measure, burst_steps: As for
            :class:`~hmm_fem.micro.agents.LatticeWalkers`.
    """

    def __init__(
        self,
        factory: Callable,
        *,
        dim: int,
        spacing: float,
        capacity: float,
        time_step: float,
        core_sites: int = 4,
        burst_time: float | None = None,
        replicas: int = 2,
        position: Callable | None = None,
        diffusivity: float | None = None,
        proliferation_rate: float | None = None,
    ):
        if not callable(factory):
            raise TypeError(f"factory must be callable (shape, rng) -> mesa.Model, got {factory!r}")
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim!r}")
        self.factory = factory
        self.dim = int(dim)
        self.spacing = _positive(spacing, "spacing")
        self.capacity = _positive(capacity, "capacity")
        self.time_step = _positive(time_step, "time_step")
        self.core_sites = _count(core_sites, "core_sites")
        self.replicas = _count(replicas, "replicas", 2)
        self.burst_time = _positive(
            10 * self.time_step if burst_time is None else burst_time, "burst_time"
        )
        self.burst_steps = max(1, round(self.burst_time / self.time_step))
        self.patch_width = (self.core_sites + 2) * self.spacing
        self.patch_measure = self.patch_width**self.dim
        self.position = _default_position if position is None else position
        self.shape = (self.core_sites + 2,) * self.dim
        if (diffusivity is None) != (proliferation_rate is None):
            raise ValueError("give both diffusivity and proliferation_rate, or neither")
        if diffusivity is not None:
            self.diffusivity = _positive(diffusivity, "diffusivity")
            self.proliferation_rate = _positive(proliferation_rate, "proliferation_rate")
        if diffusivity is not None:
            self.mean_field_tangent = self._mean_field_tangent

    def _mean_field_tangent(self, density):
        """Derivatives of the mean-field law: ``r (1 - 2u)`` and ``-D I``."""
        u = np.asarray(density, dtype=float).reshape(-1)
        eye = np.broadcast_to(np.eye(self.dim), (len(u), self.dim, self.dim))
        return self.proliferation_rate * (1 - 2 * u), -self.diffusivity * eye

    def _sites(self, model) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, positions)`` of the model's agents (``(N,)``, ``(N, dim)`` integers)."""
        agents = list(model.agents)
        ids = np.fromiter((a.unique_id for a in agents), dtype=np.int64, count=len(agents))
        positions = np.array([self.position(a) for a in agents], dtype=np.int64)
        return ids, positions.reshape(len(agents), self.dim)

    def _populate(self, model, counts: np.ndarray) -> None:
        for site in zip(*np.nonzero(counts)):
            site = tuple(int(i) for i in site)
            for _ in range(int(counts[site])):
                model.add_agent(site)

    def run_patches(self, density, gradient, rng: np.random.Generator) -> PatchEstimate:
        """Lift one Mesa model per patch and replica, run a burst, measure (see module doc).

        Args:
            density: ``(n,)`` densities at the patch centres (units of ``capacity``).
            gradient: ``(n, dim)`` gradients.
            rng: The generator (lifts, frames and the models' seeds).

        Returns:
            The :class:`~hmm_fem.micro.agents.lattice.PatchEstimate`.
        """
        u, g = check_states(density, gradient, self.dim)
        counts, means = lift_patches(
            u, g, self.spacing, self.core_sites, self.capacity, self.replicas, rng
        )
        d, m, S = self.dim, self.core_sites, self.burst_steps
        frame = np.ones(self.shape, dtype=bool)
        frame[(slice(1, -1),) * d] = False
        births = np.zeros(len(counts))
        crossings = np.zeros((len(counts), d))
        updates = 0
        for p in range(len(counts)):
            model = self.factory(self.shape, int(rng.integers(2**63)))
            self._populate(model, counts[p])
            for _ in range(S):
                ids0, pos0 = self._sites(model)
                updates += len(ids0)
                model.step()
                ids1, pos1 = self._sites(model)
                in_core = np.all((pos1 >= 1) & (pos1 <= m), axis=1)
                born = ~np.isin(ids1, ids0)
                births[p] += np.count_nonzero(born & in_core)
                order = np.argsort(ids1)
                where = np.searchsorted(ids1, ids0, sorter=order)
                where = np.minimum(where, len(ids1) - 1) if len(ids1) else where
                alive = ids1[order[where]] == ids0 if len(ids1) else np.zeros(len(ids0), bool)
                before, after = pos0[alive], pos1[order[where[alive]]]
                for axis in range(d):
                    others = [k for k in range(d) if k != axis]
                    rows = np.all((before[:, others] >= 1) & (before[:, others] <= m), axis=1)
                    rows &= np.all((after[:, others] >= 1) & (after[:, others] <= m), axis=1)
                    crossings[p, axis] += (after[rows, axis] - before[rows, axis]).sum()
                # The frame is a reservoir: redraw it.
                ids1, pos1 = self._sites(model)
                on_frame = frame[tuple(pos1.T)]
                agents = {a.unique_id: a for a in model.agents}
                for i in ids1[on_frame]:
                    agents[int(i)].remove()
                fresh = np.zeros(self.shape, dtype=np.int64)
                fresh[frame] = rng.poisson(means[p][frame])
                self._populate(model, fresh)
        return PatchEstimate.from_replicas(
            births, crossings, time=S * self.time_step, core_sites=m, dim=d,
            spacing=self.spacing, capacity=self.capacity, replicas=self.replicas,
            site_updates=updates,
        )


def _mesa_walker_classes():
    """The Mesa classes of the walker model (built on first use: Mesa is imported lazily)."""
    import mesa
    from mesa.discrete_space import CellAgent, OrthogonalVonNeumannGrid

    class Walker(CellAgent):
        """A walker: divides (crowding from the start-of-step count), then maybe hops."""

        def __init__(self, model, cell):
            super().__init__(model)
            self.cell = cell

        def step(self):
            model = self.model
            start = self.cell
            n = model.occupancy[start.coordinate]
            if model.rng.random() < model.division_probability * max(0.0, 1.0 - n / model.K):
                model.daughters.append(start)
            if model.rng.random() < model.hop_probability:
                axis, sign = divmod(int(model.rng.integers(2 * model.dim)), 2)
                target = list(start.coordinate)
                target[axis] += 1 if sign == 0 else -1
                if 0 <= target[axis] < model.shape[axis]:  # a wall refuses the hop
                    self.cell = model.grid[tuple(target)]

    class WalkerModel(mesa.Model):
        """The walkers of :class:`~hmm_fem.micro.agents.LatticeWalkers`, one object each."""

        def __init__(self, shape, rng, *, K, division_probability, hop_probability):
            super().__init__(rng=rng)
            self.shape = tuple(shape)
            self.dim = len(self.shape)
            self.K = K
            self.division_probability = division_probability
            self.hop_probability = hop_probability
            self.grid = OrthogonalVonNeumannGrid(list(self.shape), torus=False, random=self.random)
            self.daughters = []
            self.occupancy = {}

        def add_agent(self, site):
            Walker(self, self.grid[tuple(site)])

        def step(self):
            self.occupancy = {c.coordinate: len(c.agents) for c in self.grid.all_cells}
            self.daughters = []
            self.agents.shuffle_do("step")
            for cell in self.daughters:
                Walker(self, cell)

    return Walker, WalkerModel


class MesaWalkers(MesaPatches):
    """The walker model of :class:`~hmm_fem.micro.agents.LatticeWalkers` written with Mesa.

    One ``mesa.discrete_space.CellAgent`` per walker on an ``OrthogonalVonNeumannGrid``
    without wrap-around; every step each agent (in random order) divides with probability
    ``r tau (1 - n/K)_+`` (``n``: its site's count at the start of the step; the daughter
    appears on that site after all agents acted) and hops with probability ``p`` to a
    uniformly chosen one of the ``2d`` directions, refused at a wall. The same rules as the
    vectorised walkers, so the same mean-field limit and the same growth rate; used to
    validate the adapter.

    Args:
        walkers: The :class:`~hmm_fem.micro.agents.LatticeWalkers` whose rules, lattice,
            patch size, burst and replicas to copy.
    """

    def __init__(self, walkers: LatticeWalkers):
        _, model_class = _mesa_walker_classes()
        tau = walkers.time_step

        def factory(shape, rng):
            return model_class(
                shape,
                rng,
                K=walkers.capacity,
                division_probability=walkers.proliferation_rate * tau,
                hop_probability=walkers.hop_probability,
            )

        super().__init__(
            factory,
            dim=walkers.dim,
            spacing=walkers.spacing,
            capacity=walkers.capacity,
            time_step=tau,
            core_sites=walkers.core_sites,
            burst_time=walkers.burst_time,
            replicas=walkers.replicas,
            diffusivity=walkers.diffusivity,
            proliferation_rate=walkers.proliferation_rate,
        )
