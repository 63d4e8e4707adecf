"""The lattice KMC engine: many independent lattices, one compiled rejection-free loop.

:class:`KMC` holds ``B`` independent lattices of one shape (replicas of one surface, or the
patches of a gap-tooth scheme), each with its own clock, random stream, rates and, for
reservoir boundaries, its own ghost sites. One call of :meth:`KMC.run` advances all of
them (in a compiled loop, lattice after lattice). See :mod:`hmm_fem.micro.kmc` for the
algorithm and :mod:`hmm_fem.micro.kmc.model` for the models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .geometry import geometry, normalise
from .model import LatticeModel

try:
    from . import _kernels as _k
except ImportError as exc:  # pragma: no cover - the environment has numba
    raise ImportError(
        "hmm_fem.micro.kmc needs numba (compiled KMC kernels): install Debian's "
        "python3-numba (docker/packages.txt) or `pip install numba`"
    ) from exc

__all__ = ["KMC", "rank_block", "lattice_streams"]


def lattice_streams(seed: int, ids) -> np.ndarray:
    """xoshiro256+ states ``(len(ids), 4)`` of the lattices ``ids`` under ``seed``.

    Lattice ``i`` draws from ``numpy.random.SeedSequence([seed, i])``, so its stream depends
    only on the seed and its own id, not on which rank holds it or how many lattices
    there are.
    """
    states = np.empty((len(ids), 4), dtype=np.uint64)
    for row, i in enumerate(ids):
        states[row] = np.random.SeedSequence([int(seed), int(i)]).generate_state(4, np.uint64)
        if not states[row].any():  # pragma: no cover - probability 2**-256
            states[row, 0] = 1
    return states


def rank_block(count: int, comm=None) -> range:
    """The contiguous block of ``range(count)`` that rank ``comm.rank`` of ``comm`` holds.

    Give it as ``ids`` to :class:`KMC` to distribute ``count`` lattices over the ranks
    (blocks in rank order: gathering them restores the order).
    """
    if comm is None:
        return range(count)
    size, rank = comm.Get_size(), comm.Get_rank()
    return range(count * rank // size, count * (rank + 1) // size)


def _nonnegative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


class KMC:
    """Rejection-free kinetic Monte Carlo on ``B`` independent lattices at once.

    Each lattice is a chain ``(L,)`` or a square lattice ``(Ly, Lx)`` of sites holding one
    species each, with a per-axis boundary (``"periodic"``, ``"reservoir"`` ghost sites of
    given species, or ``"closed"``; see :mod:`hmm_fem.micro.kmc.geometry`). The lattices
    share the model's events, but each has its own rates (:meth:`set_rates`), clock
    (:attr:`time`), random stream and ghost sites; they never interact.

    **Algorithm.** The n-fold way (BKL) with one class per condition (a species for site
    events, an unordered species pair for pair events) and O(1) list updates; waiting times
    are exponential with the total rate; instantaneous events cascade as described in
    :class:`~hmm_fem.micro.kmc.model.LatticeModel`. A run ends at a given time: the event
    that would happen after it is kept for the next run, so that running to ``t1`` and then
    to ``t2`` is the same trajectory as running to ``t2`` at once (changing the state or the
    rates in between discards it; by memorylessness the statistics are exact either way).

    **Well-mixed mode** (``well_mixed=True``): a pair event acts on two distinct sites
    drawn at random instead of neighbours, at the rate of ``z N / 2`` bonds of a random
    lattice (``z n_A n_B / (N - 1)`` pairs ``A B``, ``z n_A (n_A - 1) / (2 (N - 1))`` pairs
    ``A A``). It is the master equation of the complete graph, whose large-``N`` limit is
    the mean-field rate equation :meth:`LatticeModel.mean_field_rhs`. It needs finite rates
    and periodic axes.

    **Randomness.** Lattice ``i`` (its entry in ``ids``) draws everything (lift, ghost
    draws, events) from its own xoshiro256+ stream seeded by ``SeedSequence([seed, i])``:
    the same lattice gives the same trajectory whatever else is in the batch and on
    whichever MPI rank it runs (:func:`rank_block` splits ids over ranks).

    Example:
        Ten replicas of the ZGB model at ``y = 0.5`` on 64 x 64 lattices::

            from hmm_fem.micro.kmc import KMC, zgb
            sim = KMC(zgb(0.5), (64, 64), lattices=10, seed=1)
            sim.run(200.0)                    # 200 Monte Carlo steps
            theta = sim.coverages(["CO", "O"])  # (10, 2)

        Patches with reservoir boundaries (see :meth:`set_boundary`)::

            sim = KMC(zgb(0.5), (16, 16), lattices=100, boundary="reservoir")
            sim.lift({"CO": cov_co, "O": cov_o})          # (100,) arrays
            sim.set_boundary({"CO": edge_co, "O": edge_o})
            sim.run(1.0)
            rate = sim.counts[:, sim.model.event_index("reaction")]

    Args:
        model: The :class:`~hmm_fem.micro.kmc.model.LatticeModel`.
        shape: ``L`` or ``(L,)`` for a chain, ``(Ly, Lx)`` for a square lattice.
        lattices: Number of lattices ``B`` (ignored when ``ids`` is given).
        seed: Non-negative integer seed.
        ids: Global ids of the lattices (their random streams), default ``range(B)``.
        boundary: One of ``"periodic"``, ``"reservoir"``, ``"closed"``, or one per axis.
        well_mixed: Draw pair partners at random instead of neighbours (see above).

    Attributes:
        model: The model.
        geometry: The :class:`~hmm_fem.micro.kmc.geometry.Geometry` (neighbours, bonds,
            ghost coordinates).
        ids: The lattices' ids, ``(B,)``.
        counts: ``(B, E)`` events executed per lattice and event since the last
            :meth:`reset_counts` (instantaneous ones included).
        boundary_counts: ``(B, E)`` of those, the pair events with a ghost site.
        clipped: Sets of coverages that :meth:`lift` or :meth:`set_boundary` projected
            onto the simplex because ``clip=True`` was given.

    Raises:
        ValueError: On a bad shape, boundary, seed or ids, or well-mixed with an
            instantaneous event or a non-periodic axis.
    """

    def __init__(
        self,
        model: LatticeModel,
        shape,
        *,
        lattices: int = 1,
        seed: int = 0,
        ids: Sequence[int] | None = None,
        boundary="periodic",
        well_mixed: bool = False,
    ):
        if not isinstance(model, LatticeModel):
            raise TypeError(f"KMC: model must be a LatticeModel, got {type(model).__name__}")
        shape, boundary = normalise(shape, boundary)
        self.seed = _nonnegative_int(seed, "KMC: seed")
        if ids is None:
            B = _nonnegative_int(lattices, "KMC: lattices")
            ids = np.arange(B, dtype=np.int64)
        else:
            ids = np.asarray(ids)
            if ids.ndim != 1 or (ids.size and (not np.issubdtype(ids.dtype, np.integer)
                                               or ids.min() < 0)):
                raise ValueError(f"KMC: ids must be non-negative integers, got {ids!r}")
            if len(np.unique(ids)) != len(ids):
                raise ValueError("KMC: ids must be distinct (each lattice has its own stream)")
            ids = ids.astype(np.int64)
        self.well_mixed = bool(well_mixed)
        if self.well_mixed and model.has_instantaneous:
            raise ValueError(
                "KMC: the well-mixed mode needs finite rates (an instantaneous event has no "
                "random-partner meaning): give every pair event a finite rate"
            )
        if self.well_mixed and any(b != "periodic" for b in boundary):
            raise ValueError(
                f"KMC: the well-mixed mode has no boundary; use boundary='periodic', got "
                f"{boundary}"
            )
        self.model = model
        self.shape, self.boundary = shape, boundary
        self.geometry = geo = geometry(shape, boundary)
        self.ids = ids
        self.ids.setflags(write=False)
        self._compile_model()
        B, N, G, M, S = len(ids), geo.sites, geo.ghosts, geo.bonds, len(model.species)
        C = len(self._cls_a)
        self._s = np.zeros((B, N + G), dtype=np.int8)
        self._s[:] = model.code(model.vacancy)
        self._slist = np.zeros((B, S, N), dtype=np.int32)  # rows of unlisted species unused
        self._scount = np.zeros((B, S), dtype=np.int64)
        self._spos = np.zeros((B, N), dtype=np.int32)
        self._bcls = np.zeros((B, M), dtype=np.int8)
        self._blist = np.zeros((B, C, 0 if self.well_mixed else M), dtype=np.int32)
        self._bcount = np.zeros((B, C), dtype=np.int64)
        self._bpos = np.zeros((B, M), dtype=np.int32)
        self._rates = np.tile(model.rates, (B, 1))
        self._rng = lattice_streams(self.seed, ids)
        self._time = np.zeros(B)
        self._tnext = np.full(B, np.nan)
        self.counts = np.zeros((B, len(model.events)), dtype=np.int64)
        self.clipped = 0
        self.boundary_counts = np.zeros_like(self.counts)
        self._rebuild()

    # -- the model in arrays -------------------------------------------------------------

    def _compile_model(self):
        model = self.model
        S = len(model.species)
        events = model.events
        E = len(events)
        r1 = np.array([e.reactants[0] for e in events], dtype=np.int32)
        r2 = np.array([e.reactants[1] if e.is_pair else -1 for e in events], dtype=np.int32)
        p1 = np.array([e.products[0] for e in events], dtype=np.int32)
        p2 = np.array([e.products[1] if e.is_pair else -1 for e in events], dtype=np.int32)
        site = [[q for q in range(E) if not events[q].is_pair and r1[q] == k] for k in range(S)]
        self._site_ptr = np.cumsum([0] + [len(x) for x in site]).astype(np.int32)
        self._site_ev = np.array([q for x in site for q in x], dtype=np.int32)
        pairs = sorted({tuple(sorted(e.reactants)) for e in events
                        if e.is_pair and not e.instantaneous})
        self._pair_cls = np.full((S, S), -1, dtype=np.int32)
        for c, (a, b) in enumerate(pairs):
            self._pair_cls[a, b] = self._pair_cls[b, a] = c
        self._cls_a = np.array([a for a, _ in pairs], dtype=np.int32)
        self._cls_b = np.array([b for _, b in pairs], dtype=np.int32)
        members = [[q for q in range(E) if events[q].is_pair and not events[q].instantaneous
                    and tuple(sorted(events[q].reactants)) == p] for p in pairs]
        self._cls_ptr = np.cumsum([0] + [len(x) for x in members]).astype(np.int32)
        self._cls_ev = np.array([q for x in members for q in x], dtype=np.int32)
        self._inst_ev = np.array([q for q in range(E) if events[q].instantaneous],
                                 dtype=np.int32)
        self._pcls = self._pair_cls.reshape(-1).copy()
        # Species with a site list: those with site events, and in the well-mixed mode those
        # of pair classes (their partners are drawn from the lists). Species in a pair
        # class have their bonds classified (neighbour mode only).
        self._listed = np.array([self._site_ptr[k + 1] > self._site_ptr[k] for k in range(S)])
        self._paired = np.zeros(S, dtype=bool)
        for a, b in pairs:
            if self.well_mixed:
                self._listed[[a, b]] = True
            else:
                self._paired[[a, b]] = True
        self._r1, self._r2, self._p1, self._p2 = r1, r2, p1, p2
        # Instantaneous pairs sit in no class; a finite pair class on the same species
        # would compete with them, which is allowed (it simply never fires there).

    def _rebuild(self):
        g = self.geometry
        _k.build_lists(self._s, g.sites, len(self.model.species), self._listed, self._paired,
                       g.bond_sites, self._pcls, self._slist, self._scount, self._spos,
                       self._bcls, self._blist, self._bcount, self._bpos)
        self._tnext[:] = np.nan

    def _relax(self):
        if len(self._inst_ev) == 0:
            return
        g = self.geometry
        _k.relax(self._s, g.sites, len(self.model.species), g.neighbours, g.dim,
                 self._inst_ev, self._r1, self._r2, self._p1, self._p2, self._rng, self.counts,
                 self.boundary_counts, self._listed, self._paired, self._pcls, self._slist,
                 self._scount, self._spos, self._bcls, self._blist, self._bcount, self._bpos)

    # -- sizes and views -----------------------------------------------------------------

    @property
    def lattices(self) -> int:
        """Number of lattices ``B``."""
        return len(self.ids)

    @property
    def sites(self) -> int:
        """Sites per lattice ``N`` (ghosts not counted)."""
        return self.geometry.sites

    @property
    def lattice(self) -> np.ndarray:
        """The species codes, ``(B, *shape)`` (a read-only view; see :meth:`set_lattice`)."""
        view = self._s[:, : self.sites].reshape(self.lattices, *self.shape)
        view.flags.writeable = False
        return view

    @property
    def ghost_species(self) -> np.ndarray:
        """Species codes of the ghost sites, ``(B, G)`` (a copy)."""
        return self._s[:, self.sites :].copy()

    @property
    def time(self) -> np.ndarray:
        """The lattices' clocks, ``(B,)`` (a copy)."""
        return self._time.copy()

    @property
    def rates(self) -> np.ndarray:
        """The lattices' event rates, ``(B, E)`` (a copy; see :meth:`set_rates`)."""
        return self._rates.copy()

    def species_counts(self) -> np.ndarray:
        """Sites holding each species, ``(B, S)`` (ghosts not counted)."""
        return self._scount.copy()

    def coverages(self, species=None) -> np.ndarray:
        """Coverages (fractions of the ``N`` sites): ``(B, S)``, or ``(B, len(species))``.

        Args:
            species: Names of the species to return, in that order (default: all).
        """
        theta = self._scount / self.sites
        if species is None:
            return theta
        if isinstance(species, str):
            species = [species]
        return theta[:, [self.model.code(s) for s in species]]

    def total_rate(self) -> np.ndarray:
        """Total rate of the finite-rate events of each lattice, ``(B,)``."""
        S, N = len(self.model.species), self.sites
        R = np.zeros(self.lattices)
        for k in range(S):
            q = self._site_ev[self._site_ptr[k]: self._site_ptr[k + 1]]
            R += self._rates[:, q].sum(axis=1) * self._scount[:, k]
        for c in range(len(self._cls_a)):
            q = self._cls_ev[self._cls_ptr[c]: self._cls_ptr[c + 1]]
            W = self._rates[:, q].sum(axis=1)
            if self.well_mixed:
                scale = self.geometry.coordination / (N - 1) if N > 1 else 0.0
                na = self._scount[:, self._cls_a[c]]
                if self._cls_a[c] == self._cls_b[c]:
                    R += W * 0.5 * scale * na * (na - 1)
                else:
                    R += W * scale * na * self._scount[:, self._cls_b[c]]
            else:
                R += W * self._bcount[:, c]
        return R

    # -- changing the state --------------------------------------------------------------

    def _lattice_rows(self, lattices):
        if lattices is None:
            return np.arange(self.lattices)
        rows = np.atleast_1d(np.asarray(lattices))
        if rows.dtype == bool:
            if rows.shape != (self.lattices,):
                raise ValueError(
                    f"a boolean lattices mask must have shape ({self.lattices},), got "
                    f"{rows.shape}"
                )
            return np.flatnonzero(rows)
        if not np.issubdtype(rows.dtype, np.integer) or rows.min(initial=0) < 0 or (
            rows.max(initial=-1) >= self.lattices
        ):
            raise ValueError(
                f"lattices must be row indices in [0, {self.lattices}) or a mask, got "
                f"{lattices!r}"
            )
        return rows

    def _coverage_table(self, coverages, lead, what, clip):
        """Coverages of all species, shape ``(*lead, S)``, from a mapping or an array.

        ``lead`` is ``(n,)`` (one set per lattice) or ``(n, G)`` (one per ghost site); a
        mapping's values and an array's leading axes broadcast against it (a per-lattice
        ``(n,)`` value counts for all ghosts of its lattice).
        """
        S = len(self.model.species)
        names = self.model.species

        def spread(value, name):
            value = np.asarray(value, dtype=float)
            if len(lead) == 2 and value.shape == lead[:1]:
                value = value[:, None]
            try:
                return np.broadcast_to(value, lead)
            except ValueError:
                raise ValueError(
                    f"{what}: the coverage of {name} must be a number or have shape "
                    f"{' or '.join(str(x) for x in (lead[:1], lead)[: len(lead)])}, got "
                    f"{value.shape}"
                ) from None

        if isinstance(coverages, Mapping):
            table = np.zeros((*lead, S))
            vac = self.model.code(self.model.vacancy)
            for name, value in coverages.items():
                k = self.model.code(name)
                if k == vac:
                    raise ValueError(
                        f"{what}: give the coverages of the other species; the vacancy "
                        f"{self.model.vacancy!r} takes the rest"
                    )
                table[..., k] = spread(value, repr(name))
            table[..., vac] = 1.0 - table.sum(axis=-1)
        else:
            array = np.asarray(coverages, dtype=float)
            if array.ndim == 0 or array.shape[-1] != S:
                raise ValueError(
                    f"{what}: an array of coverages must list all {S} species {names} on its "
                    f"last axis, got shape {array.shape}; or give a mapping name -> coverage"
                )
            table = np.stack([spread(array[..., k], "the species") for k in range(S)], -1)
        table = np.array(table, dtype=float)
        if not np.all(np.isfinite(table)):
            raise ValueError(f"{what}: the coverages are not finite")
        flat = table.reshape(-1, S)
        bad = (flat < -1e-12).any(axis=1) | (np.abs(flat.sum(axis=1) - 1) > 1e-9)
        if bad.any():
            if not clip:
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{what}: coverages must be >= 0 and sum to 1 over the species {names}; "
                    f"entry {np.unravel_index(row, lead)} is {flat[row]}. Pass clip=True to "
                    "project them onto that simplex"
                )
            flat[bad] = _project_simplex(flat[bad])
            self.clipped += int(bad.sum())
        return np.clip(table, 0.0, None)

    def lift(self, coverages, *, lattices=None, clip: bool = False) -> np.ndarray:
        """Random configurations with the given coverages (on the chosen lattices).

        The site counts are an unbiased rounding of ``coverage * N`` (systematic sampling
        of the cumulative coverages with one uniform offset per lattice: each count is
        ``floor`` or ``ceil`` of its target, equal to it on average, and they add up to
        ``N``); the species are then placed uniformly at random. With instantaneous events
        the configuration is relaxed afterwards (reacting pairs react), which may lower the
        coverages. The clocks are kept; the counters are not reset.

        Args:
            coverages: A mapping ``species -> coverage`` (a number or one per chosen
                lattice ``(B',)``; the vacancy takes the rest), or the coverages of all
                species ``(S,)`` or ``(B', S)``.
            lattices: Which lattices (indices or a mask; default all).
            clip: Project coverages outside the simplex onto it (counted in
                :attr:`clipped`) instead of raising.

        Returns:
            The site counts placed, ``(B', S)``.

        Raises:
            ValueError: If the coverages are negative or do not sum to 1 (and not ``clip``).
        """
        rows = self._lattice_rows(lattices)
        table = self._coverage_table(coverages, (len(rows),), "lift", clip)
        N = self.sites
        offset = _k.uniforms(self._rng)[rows] if len(rows) else np.zeros(0)
        edges = np.floor(np.cumsum(table, axis=1) * N + offset[:, None]).astype(np.int64)
        edges = np.minimum(edges, N)
        edges[:, -1] = N
        counts = np.diff(np.concatenate([np.zeros((len(rows), 1), np.int64), edges], axis=1))
        counts = np.maximum(counts, 0)
        # Rows drawn in their own streams: lift only the chosen lattices.
        sub_s = np.ascontiguousarray(self._s[rows])
        sub_rng = np.ascontiguousarray(self._rng[rows])
        _k.place(sub_s, N, counts, sub_rng)
        self._s[rows] = sub_s
        self._rng[rows] = sub_rng
        self._rebuild()
        self._relax()
        return counts

    def set_lattice(self, species, *, lattices=None, relax: bool = True):
        """Set the configurations: species codes or names, ``(*shape)`` or ``(B', *shape)``.

        Args:
            species: Integer codes (``model.code(name)``) or an array of names.
            lattices: Which lattices (default all).
            relax: Apply the instantaneous events to reacting pairs in the new state (the
                engine assumes there are none).

        Raises:
            ValueError: On a wrong shape or an unknown code.
        """
        rows = self._lattice_rows(lattices)
        values = np.asarray(species)
        if values.dtype.kind in "US":
            codes = {name: k for k, name in enumerate(self.model.species)}
            unknown = set(np.unique(values)) - set(codes)
            if unknown:
                raise ValueError(f"set_lattice: unknown species {sorted(unknown)}")
            values = np.vectorize(codes.__getitem__, otypes=[np.int64])(values)
        if values.shape == self.shape:
            values = np.broadcast_to(values, (len(rows), *self.shape))
        if values.shape != (len(rows), *self.shape):
            raise ValueError(
                f"set_lattice: expected shape {self.shape} or {(len(rows), *self.shape)}, got "
                f"{values.shape}"
            )
        if values.size and (values.min() < 0 or values.max() >= len(self.model.species)):
            raise ValueError(
                f"set_lattice: species codes must be in [0, {len(self.model.species)}), got "
                f"[{values.min()}, {values.max()}]"
            )
        self._s[rows, : self.sites] = values.reshape(len(rows), -1)
        self._rebuild()
        if relax:
            self._relax()

    def set_boundary(self, coverages=None, *, species=None, lattices=None, clip=False):
        """Set the ghost sites of reservoir axes (a patch's boundary condition).

        Either draw each ghost site's species at random from ``coverages`` (independently
        per ghost, in the lattice's stream), or set the species codes directly. Ghost
        sites never change during :meth:`run`; set them again between runs to follow a
        changing surroundings.

        Args:
            coverages: A mapping ``species -> coverage`` (the vacancy takes the rest) whose
                values are numbers, ``(B',)`` (per lattice) or ``(B', G)`` (per ghost: e.g.
                a gradient along the lattice, from :attr:`Geometry.ghost_coordinates`), or
                an array of all species' coverages ``(S,)``, ``(B', S)`` or ``(B', G, S)``.
            species: ``(G,)`` or ``(B', G)`` species codes instead of ``coverages``.
            lattices: Which lattices (default all).
            clip: Project coverages outside the simplex onto it instead of raising.

        Raises:
            ValueError: If no axis is a reservoir, or on bad values.
        """
        G, N, S = self.geometry.ghosts, self.sites, len(self.model.species)
        if G == 0:
            raise ValueError(
                f"set_boundary: the lattice has no ghost sites (boundary {self.boundary}); "
                "create it with boundary='reservoir' on the axes that need one"
            )
        if (coverages is None) == (species is None):
            raise ValueError("set_boundary: give either coverages or species")
        rows = self._lattice_rows(lattices)
        n = len(rows)
        if species is not None:
            values = np.asarray(species)
            if values.shape == (G,):
                values = np.broadcast_to(values, (n, G))
            if values.shape != (n, G) or not np.issubdtype(values.dtype, np.integer):
                raise ValueError(
                    f"set_boundary: species must be integer codes of shape ({G},) or ({n}, {G})"
                )
            if values.size and (values.min() < 0 or values.max() >= S):
                raise ValueError(f"set_boundary: species codes must be in [0, {S})")
            self._s[rows, N:] = values
        else:
            table = self._coverage_table(coverages, (n, G), "set_boundary", clip)
            cumulative = np.ascontiguousarray(np.cumsum(table, axis=2))
            sub_s = np.ascontiguousarray(self._s[rows])
            sub_rng = np.ascontiguousarray(self._rng[rows])
            _k.draw_ghosts(sub_s, N, cumulative, sub_rng)
            self._s[rows] = sub_s
            self._rng[rows] = sub_rng
        self._rebuild()
        self._relax()

    def set_rates(self, lattices=None, **rates):
        """Change event rates: ``set_rates(reaction=50.0, CO_adsorption=y_per_lattice)``.

        Args:
            lattices: Which lattices (default all).
            **rates: Event name -> a rate or one rate per chosen lattice. Instantaneous
                events stay instantaneous (their rate cannot be changed here).

        Raises:
            KeyError: On an unknown event name.
            ValueError: On a negative or non-finite rate, or a change of an
                instantaneous event.
        """
        rows = self._lattice_rows(lattices)
        for name, value in rates.items():
            e = self.model.event_index(name)
            value = np.asarray(value, dtype=float)
            if self.model.events[e].instantaneous:
                raise ValueError(
                    f"set_rates: event {name!r} is instantaneous; build a model with a finite "
                    "rate for it (LatticeModel.with_rates) to vary it"
                )
            if not np.all(np.isfinite(value)) or np.any(value < 0):
                raise ValueError(f"set_rates: the rate of {name!r} must be finite and >= 0")
            try:
                self._rates[rows, e] = np.broadcast_to(value, (len(rows),))
            except ValueError:
                raise ValueError(
                    f"set_rates: give {name!r} one rate or one per lattice ({len(rows)},), got "
                    f"shape {value.shape}"
                ) from None
        self._tnext[rows] = np.nan

    def set_time(self, t, *, lattices=None):
        """Set the clocks (a number or one per lattice); the pending event is discarded."""
        rows = self._lattice_rows(lattices)
        value = np.asarray(t, dtype=float)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"set_time: times must be finite, got {t!r}")
        self._time[rows] = np.broadcast_to(value, (len(rows),))
        self._tnext[rows] = np.nan

    def reset_counts(self):
        """Set :attr:`counts` and :attr:`boundary_counts` to zero."""
        self.counts[:] = 0
        self.boundary_counts[:] = 0

    # -- running -------------------------------------------------------------------------

    def run(self, duration=None, *, until=None, max_events: int | None = None) -> np.ndarray:
        """Advance every lattice by ``duration`` (or to the time ``until``).

        Args:
            duration: Time to simulate, a number or one per lattice.
            until: Absolute end time instead (a number or one per lattice).
            max_events: Stop a lattice after this many (finite-rate) events; without a
                duration or end time the lattices run exactly that many events (then their
                clocks stand at their last event).

        Returns:
            ``(B,)`` finite-rate events executed per lattice (the instantaneous ones are in
            :attr:`counts`).

        Raises:
            ValueError: On a negative duration, an end time before a lattice's clock, or
                nothing to stop at.
        """
        if duration is not None and until is not None:
            raise ValueError("run: give duration or until, not both")
        if duration is None and until is None and max_events is None:
            raise ValueError("run: give a duration, an end time (until) or max_events")
        B = self.lattices
        if duration is not None:
            duration = np.broadcast_to(np.asarray(duration, dtype=float), (B,))
            if not np.all(duration >= 0) or np.any(np.isnan(duration)):
                raise ValueError(f"run: the duration must be >= 0, got {duration}")
            t_end = self._time + duration
        elif until is not None:
            t_end = np.broadcast_to(np.asarray(until, dtype=float), (B,)).copy()
            if np.any(np.isnan(t_end)) or np.any(t_end < self._time):
                raise ValueError(
                    f"run: until must not be before the lattices' clocks {self._time}, got "
                    f"{t_end}"
                )
        else:
            t_end = np.full(B, np.inf)
        cap = np.iinfo(np.int64).max if max_events is None else _nonnegative_int(
            max_events, "run: max_events")
        executed = np.zeros(B, dtype=np.int64)
        g = self.geometry
        _k.run(self._s, g.sites, len(self.model.species), g.neighbours, g.dim,
               g.ghost_neighbour, self._listed, self._paired, self._pcls, self._cls_a, self._cls_b,
               self._site_ptr, self._site_ev, self._cls_ptr, self._cls_ev, self._inst_ev,
               self._r1, self._r2, self._p1, self._p2, self._rates, self._rng, self._time,
               self._tnext, np.ascontiguousarray(t_end), cap, self.counts,
               self.boundary_counts, self._slist, self._scount, self._spos, self._bcls,
               self._blist, self._bcount, self._bpos, self.well_mixed, executed)
        return executed

    def __repr__(self) -> str:
        return (
            f"KMC({self.lattices} lattices {self.shape}, boundary {self.boundary}, "
            f"{'well-mixed, ' if self.well_mixed else ''}species {list(self.model.species)})"
        )


def _project_simplex(table: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row onto the probability simplex (Duchi et al., 2008)."""
    n, S = table.shape
    u = -np.sort(-table, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    k = np.arange(1, S + 1)
    cond = u - css / k > 0
    rho = S - 1 - np.argmax(cond[:, ::-1], axis=1)
    tau = css[np.arange(n), rho] / (rho + 1)
    return np.maximum(table - tau[:, None], 0.0)

