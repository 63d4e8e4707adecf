"""Coverages on a catalytic surface, with reaction rates and surface fluxes from KMC patches.

The balance of the coverage ``theta_s`` of every adsorbed species ``s`` (e.g. CO and O in the
ZGB model; the vacancy takes the rest):

    d theta_s / dt + div J_s = R_s,

with ``R_s`` (the net rate of change by adsorption, desorption and reaction, per site) and
``J_s`` (the surface flux of the species that hop) answered at every step by a persistent
KMC patch at the midpoint of every macro cell
(:class:`~hmm_fem.micro.kmc.patches.KMCPatches`): the patch is constrained to the macro
coverages there, framed by reservoir ghost sites drawn from the macro coverages and
gradients, run for the step, and its event counters give ``R_s`` and ``J_s``. Units: lengths
in lattice sites (the macro coordinate ``x`` is a site index), time in the model's unit
(Monte Carlo steps for :func:`~hmm_fem.micro.kmc.zgb`), so the flux of a hop at rate ``D``
per CO-empty pair is ``-D grad theta`` in the dilute limit with no conversion factor.

Weak form with P1 elements and lumped mass, forward Euler (the patch's run *is* the time
integration of its micro state over the step; it cannot be restarted from a predictor, so
there is no Heun stage):

    M_L (theta^{n+1} - theta^n) / dt = int J . grad v dx + int R v dx,

``J`` and ``R`` constant on each cell (the cell's patch). The explicit step is limited by
``dt < 2 / lambda_max(M_L^-1 A)`` for the fastest hop rate (checked).

**Why the macro field and not the patches carry the transport.** The gap-tooth scheme
(:class:`~hmm_fem.equation_free.PatchDynamics`) couples the patches through their edges
at every micro step, so its step is a fraction of the patch's diffusion time ``w^2/D``,
tiny for fast CO hopping. Here the patches only measure the flux at the local gradient,
and the macro step is limited by the macro mesh (``h^2 / 2D``), not by the patch.

**Why the measured flux and not a mean-field law.** The mean-field lattice-gas flux
(``J_CO = -D((1 - theta_O) grad theta_CO + theta_CO grad theta_O)`` for CO hopping into
vacancies) treats every hop as independent. In a crowded surface they are not: an adsorbate
that has just swapped with a vacancy is likely to swap back, and two species interdiffuse
at about half the mean-field rate at a total coverage of 0.9. With immobile O it is worse:
in the O-rich reactive state of the ZGB model (about 60 % O) the free sites do not
percolate, and CO moves only where reactions open paths. The patches measure the hops'
displacement in their own structure (:mod:`hmm_fem.micro.kmc.patches` lists what that
needs: patches a few correlation lengths long along the flux; they may be longer than a
cell, ``allow_overlap=True``, since each is an independent sample at its cell's midpoint).
In ``demos/demo_kmc_front.py`` the mean-field front is 30 % fast, the patch front within
a few per cent of the full lattice.

**Random streams independent of the number of ranks.** Every patch has a fixed global id
(the input index of its cell), which seeds its KMC stream and its lift and constraint
draws; the patches are dealt to the ranks in blocks of that id, gathered coverages in,
gathered rates out, so the run is the same on any number of ranks.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Mapping

import numpy as np
import ufl
from dolfinx import fem

from ..micro.kmc.engine import rank_block
from ..micro.kmc.model import LatticeModel
from ..micro.kmc.patches import KMCPatches, MeanFieldPatches, front_position
from .lumped import PatchMesh

__all__ = ["SurfaceReactionDiffusion", "front_position"]


class SurfaceReactionDiffusion:
    """Coverages ``d theta_s/dt + div J_s = R_s`` on a mesh, ``R`` and ``J`` from KMC patches.

    Example:
        A reaction front on a strip of 400 sites (see ``demos/demo_kmc_front.py``)::

            model = with_hopping(zgb(0.36, reaction_rate=1.0, diffusion_rate=100.0), O=100.0)
            mesh = dolfinx.mesh.create_interval(MPI.COMM_WORLD, 40, [0.0, 400.0])
            problem = SurfaceReactionDiffusion(
                mesh, model, dt=0.25, patch_width=24, patch_lateral=8, allow_overlap=True,
                seed=1, initial_coverages={"CO": lambda x: (x[0] > 75).astype(float)})
            problem.run(30.0)                       # Monte Carlo steps
            problem.front_position("CO", 0.5)       # ~115: the reactive state invades

    Args:
        mesh: Macro simplex mesh (intervals: a strip along x, uniform across; triangles).
            Coordinates in lattice sites.
        model: The lattice model (e.g. :func:`~hmm_fem.micro.kmc.zgb`); its non-vacancy
            species are the macro fields.
        dt: Macro time step (in the model's time unit).
        initial_coverages: Mapping species -> a number or a callable of the ``(gdim, n)``
            coordinates (DOLFINx interpolation convention); missing species start at 0.
        patch_width: Sites of a patch along each mesh axis.
        patch_lateral: On an interval mesh, the patch's sites across the strip (periodic;
            default ``patch_width``).
        seed: Seed of the patches.
        state_resolution: Coverages and gradients are rounded to multiples of this before
            they reach the patches (the sums of an assembly differ between partitions in
            the last bits; the rounding keeps a seeded run rank-independent).
        micro: ``"kmc"`` (:class:`~hmm_fem.micro.kmc.patches.KMCPatches`) or
            ``"mean_field"`` (:class:`~hmm_fem.micro.kmc.patches.MeanFieldPatches`: the
            deterministic site-approximation law, no patches run).
        allow_overlap: Allow patches larger than a cell (they are independent samples of
            the surface at the cell's midpoint; larger ones cost more but see longer
            correlations).
        **patch_options: More options of the patches (``frame``, ``relaxation``).

    Attributes:
        theta: Mapping species -> P1 coverage function.
        rate, flux: Mapping species -> DG0 functions of the last patch estimates, and
            ``rate_error``, ``flux_error`` their standard errors.
        time, steps: Current time and steps taken.
        covered_fraction: Patch length (1D) or area (2D) times cells over the domain's.
        stable_time_step: The stability bound of the explicit step.
        micro_seconds, macro_seconds: Wall time (this rank) in the patches and in the rest.
        patches: This rank's :class:`~hmm_fem.micro.kmc.patches.KMCPatches`.

    Raises:
        ValueError: On a mesh that is not of simplices, unknown species, a bad ``dt``
            (also above the stability bound), or patches larger than a cell.
    """

    def __init__(
        self,
        mesh,
        model: LatticeModel,
        *,
        dt: float,
        initial_coverages: Mapping[str, float | Callable] | None = None,
        patch_width: int = 8,
        patch_lateral: int | None = None,
        seed: int = 0,
        state_resolution: float = 1e-9,
        micro: str = "kmc",
        allow_overlap: bool = False,
        **patch_options,
    ):
        if not isinstance(model, LatticeModel):
            raise TypeError(
                f"SurfaceReactionDiffusion: model must be a LatticeModel, got "
                f"{type(model).__name__}"
            )
        pm = PatchMesh(mesh, " (one patch per cell, at its midpoint)")
        if pm.dim > 2:
            raise ValueError("SurfaceReactionDiffusion: a surface is 1D (a strip) or 2D")
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"SurfaceReactionDiffusion: dt must be positive, got {dt!r}")
        if not (np.isfinite(state_resolution) and state_resolution >= 0):
            raise ValueError(f"state_resolution must be finite and >= 0, got {state_resolution!r}")
        self.patch_mesh = pm
        self.mesh, self.model, self.comm, self.dim = mesh, model, mesh.comm, pm.dim
        self.dt = float(dt)
        self.state_resolution = float(state_resolution)
        self.species = tuple(s for s in model.species if s != model.vacancy)
        initial = dict(initial_coverages or {})
        unknown = set(initial) - set(self.species)
        if unknown:
            raise ValueError(
                f"initial_coverages: unknown or vacancy species {sorted(unknown)}; the "
                f"fields are {self.species}"
            )
        self.theta = {}
        for s in self.species:
            f = fem.Function(pm.V, name=f"theta_{s}")
            value = initial.get(s, 0.0)
            if callable(value):
                f.interpolate(lambda x, value=value: np.asarray(value(x), dtype=float))
            else:
                f.x.array[:] = float(value)
            f.x.scatter_forward()
            self.theta[s] = f

        # Patches: fixed global ids (input cell indices), dealt to the ranks in id blocks.
        parts = self.comm.allgather(pm.patch_ids)
        self._all_ids = np.sort(np.concatenate(parts))
        block = rank_block(len(self._all_ids), self.comm)
        ids = self._all_ids[block.start:block.stop]
        if micro == "kmc":
            self.patches = KMCPatches(model, patch_width, lateral=patch_lateral, dim=pm.dim,
                                      ids=ids, seed=seed, **patch_options)
        elif micro == "mean_field":
            self.patches = MeanFieldPatches(model, dim=pm.dim, ids=ids, **patch_options)
        else:
            raise ValueError(f"micro must be 'kmc' or 'mean_field', got {micro!r}")
        self._block = block
        self._where = np.searchsorted(self._all_ids, pm.patch_ids)
        measure = self.patches.patch_measure
        if measure > pm.smallest_cell * (1 + 1e-12) and not allow_overlap:
            raise ValueError(
                f"a patch ({patch_width} sites wide, measure {measure:g}) is larger than the "
                f"smallest cell ({pm.smallest_cell:.3g}): use smaller patches or a coarser mesh"
            )
        self.covered_fraction = len(self._all_ids) * measure / pm.domain_measure

        Q = fem.functionspace(mesh, ("DG", 0))
        Qv = fem.functionspace(mesh, ("DG", 0, (pm.dim,)))
        self._q_dofs = Q.dofmap.list[: pm.num_cells, 0]
        self._qv_dofs = Qv.dofmap.list[: pm.num_cells, 0]
        v = ufl.TestFunction(pm.V)
        self.rate, self.flux, self.rate_error, self.flux_error = {}, {}, {}, {}
        self._forms, self._at = {}, {}
        for s in self.species:
            self.rate[s] = fem.Function(Q, name=f"rate_{s}")
            self.rate_error[s] = fem.Function(Q, name=f"rate_error_{s}")
            self.flux[s] = fem.Function(Qv, name=f"flux_{s}")
            self.flux_error[s] = fem.Function(Qv, name=f"flux_error_{s}")
            self._forms[s] = fem.form(
                ufl.inner(self.flux[s], ufl.grad(v)) * ufl.dx + self.rate[s] * v * ufl.dx
            )
            self._at[s] = (fem.Expression(self.theta[s], pm.midpoint),
                           fem.Expression(ufl.grad(self.theta[s]), pm.midpoint))
        hop = self.patches.hop_rate
        self.stable_time_step = pm.stability_bound(hop) if hop > 0 else np.inf
        if self.dt > self.stable_time_step:
            raise ValueError(
                f"dt = {self.dt:.4g} exceeds the stability bound {self.stable_time_step:.4g} "
                f"of the explicit step (hop rate {hop:g}); lower dt or coarsen the mesh"
            )
        self.time = 0.0
        self.steps = 0
        self.micro_seconds = 0.0
        self.macro_seconds = 0.0

    # -- the patches ---------------------------------------------------------------------------
    def _midpoint_state(self):
        pm = self.patch_mesh
        n, S = pm.num_cells, len(self.species)
        theta = np.empty((n, S))
        grad = np.empty((n, S, self.dim))
        for j, s in enumerate(self.species):
            value, gradient = self._at[s]
            theta[:, j] = value.eval(self.mesh, pm.cells).reshape(n)
            grad[:, j] = gradient.eval(self.mesh, pm.cells).reshape(n, self.dim)
        if self.state_resolution > 0:
            r = self.state_resolution
            theta, grad = np.round(theta / r) * r, np.round(grad / r) * r
        return theta, grad

    def _gather(self, local: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """All ranks' ``local`` arrays, ordered by patch id (rows: positions in that order)."""
        if self.comm.size == 1:
            out = np.empty((len(self._all_ids), *local.shape[1:]))
            out[rows] = local
            return out
        parts = self.comm.allgather((rows, local))
        out = np.empty((len(self._all_ids), *local.shape[1:]))
        for r, values in parts:
            out[r] = values
        return out

    def _evaluate(self) -> None:
        start = _time.perf_counter()
        theta, grad = self._midpoint_state()
        n = len(theta)
        state = np.concatenate([theta, grad.reshape(n, -1)], axis=1)
        everything = self._gather(state, self._where)
        mine = everything[self._block.start:self._block.stop]
        S = len(self.species)
        out = self.patches.advance(mine[:, :S], mine[:, S:].reshape(-1, S, self.dim), self.dt,
                                   step=self.steps)
        answer = np.concatenate([out.rate, out.flux.reshape(len(mine), -1), out.rate_error,
                                 out.flux_error.reshape(len(mine), -1)], axis=1)
        rows = np.arange(self._block.start, self._block.stop)
        answers = self._gather(answer, rows)[self._where]
        self.micro_seconds += _time.perf_counter() - start
        d = self.dim
        parts = np.split(answers, np.cumsum([S, S * d, S]), axis=1)
        rate, flux = parts[0], parts[1].reshape(-1, S, d)
        rate_error, flux_error = parts[2], parts[3].reshape(-1, S, d)
        for j, s in enumerate(self.species):
            self.rate[s].x.array[self._q_dofs] = rate[:, j]
            self.rate_error[s].x.array[self._q_dofs] = rate_error[:, j]
            self.flux[s].x.array.reshape(-1, d)[self._qv_dofs] = flux[:, j]
            self.flux_error[s].x.array.reshape(-1, d)[self._qv_dofs] = flux_error[:, j]
            for f in (self.rate[s], self.rate_error[s], self.flux[s], self.flux_error[s]):
                f.x.scatter_forward()

    # -- time stepping -------------------------------------------------------------------------
    def step(self) -> None:
        """Advance one macro step (collective)."""
        self._evaluate()
        start = _time.perf_counter()
        pm = self.patch_mesh
        owned = pm.owned
        increments = {s: pm.assemble(self._forms[s]) * (self.dt / pm.lumped.array[:owned])
                      for s in self.species}
        for s in self.species:
            self.theta[s].x.array[:owned] += increments[s]
            self.theta[s].x.scatter_forward()
        self.time += self.dt
        self.steps += 1
        self.macro_seconds += _time.perf_counter() - start

    def run(self, duration: float, callback=None) -> None:
        """Advance ``round(duration / dt)`` steps; ``callback(self)`` after each (optional)."""
        for _ in range(round(duration / self.dt)):
            self.step()
            if callback is not None:
                callback(self)

    def coverage_integral(self, species: str) -> float:
        """``int theta_s dx`` over the domain (collective)."""
        return self.patch_mesh.integral(self.theta[species])

    def nodal_values(self) -> tuple[np.ndarray, np.ndarray]:
        """All ranks' nodes ``(n, dim)`` and coverages ``(n, S')``, in coordinate order.

        Collective; every rank gets the whole arrays (for checks and small meshes).
        """
        owned = self.patch_mesh.owned
        x = self.patch_mesh.V.tabulate_dof_coordinates()[:owned, : self.dim]
        values = np.column_stack([self.theta[s].x.array[:owned] for s in self.species])
        x = np.round(np.concatenate(self.comm.allgather(x)), 9)  # exact ties for the sort
        values = np.concatenate(self.comm.allgather(values))
        order = np.lexsort(x.T[::-1])
        return x[order], values[order]

    def front_position(self, species: str, level: float) -> float:
        """On an interval mesh: :func:`front_position` of ``theta_s`` (collective)."""
        if self.dim != 1:
            raise ValueError("front_position: only on an interval mesh (a strip)")
        x, values = self.nodal_values()
        return front_position(x[:, 0], values[:, self.species.index(species)], level)
