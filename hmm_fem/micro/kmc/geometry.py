"""Square (2D) and chain (1D) lattices: neighbours, bonds, and the boundary (ghost) sites.

Sites are numbered in C order (``i = y * Lx + x`` for the shape ``(Ly, Lx)``). Each axis
has its own boundary:

* ``"periodic"``: the lattice wraps around;
* ``"reservoir"``: a row of *ghost sites* lies just outside each end of the axis. They take
  part in pair events with the edge sites, with their species as given
  (:meth:`~hmm_fem.micro.kmc.KMC.set_boundary`), but events never change them: a change a
  pair event would make to a ghost site is discarded. The ghosts are a reservoir held at
  given coverages (a Dirichlet condition for a patch of a larger surface);
* ``"closed"``: no neighbour beyond the end (a reflecting wall).

Ghost sites are numbered after the ``N`` lattice sites, ``N .. N + G - 1``;
:attr:`Geometry.ghost_coordinates` gives their integer coordinates (``-1`` or ``L`` on
their axis).
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["Geometry", "BOUNDARIES"]

BOUNDARIES = ("periodic", "reservoir", "closed")


class Geometry:
    """Neighbour and bond tables of a lattice shape with given boundaries (read only).

    Attributes:
        shape: ``(L,)`` or ``(Ly, Lx)``.
        boundary: One boundary name per axis.
        sites: Number ``N`` of lattice sites.
        ghosts: Number ``G`` of ghost sites.
        coordination: Neighbours per site ``z`` (2 in 1D, 4 in 2D), counting missing ones.
        neighbours: ``(N, z)`` int32 neighbour of each site in each direction (``-1``:
            none); directions are ``+axis`` then ``-axis`` for each axis, last axis first.
        dim: Dimension (1 or 2).
        bond_sites: ``(M, 2)`` int32 sites of each bond id; the first is a lattice site,
            the second a lattice or a ghost site; ``-1`` for an unused id. The bond from site
            ``i`` in the ``+`` direction of axis ``k`` (last axis first) is ``dim * i + k``,
            the bond to the ghost ``N + q`` in a ``-`` direction is ``dim * N + q``.
        site_bonds: ``(N, z)`` int32 bond of each site in each direction (``-1``: none).
        ghost_neighbour: ``(G,)`` int32 the lattice site next to each ghost site.
        ghost_coordinates: ``(G, d)`` integer coordinates of the ghost sites.
    """

    def __init__(self, shape, boundary):
        self.shape = shape
        self.boundary = boundary
        dim = len(shape)
        N = math.prod(shape)
        self.sites = N
        self.coordination = 2 * dim
        coords = np.stack(np.unravel_index(np.arange(N), shape), axis=1)  # (N, d)
        # Ghost sites: for each reservoir axis, a layer at -1 and at L over the other axes.
        ghost_coords, ghost_index = [], {}
        for axis in range(dim):
            if boundary[axis] != "reservoir":
                continue
            others = [range(n) for n in shape]
            for end in (-1, shape[axis]):
                layer = list(others)
                layer[axis] = [end]
                for c in np.stack(np.meshgrid(*layer, indexing="ij"), -1).reshape(-1, dim):
                    ghost_index[tuple(int(v) for v in c)] = N + len(ghost_coords)
                    ghost_coords.append(c)
        self.ghosts = len(ghost_coords)
        self.ghost_coordinates = (
            np.array(ghost_coords, dtype=np.int64).reshape(-1, dim)
        )
        axes = list(range(dim))[::-1]  # last axis (x) first
        z = self.coordination
        neighbours = np.full((N, z), -1, dtype=np.int64)
        for k, axis in enumerate(axes):
            for side, step in ((0, 1), (1, -1)):
                moved = coords.copy()
                moved[:, axis] += step
                L = shape[axis]
                outside = (moved[:, axis] < 0) | (moved[:, axis] >= L)
                if boundary[axis] == "periodic":
                    moved[:, axis] %= L
                    outside[:] = False
                inside = ~outside
                column = neighbours[:, 2 * k + side]
                column[inside] = np.ravel_multi_index(tuple(moved[inside].T), shape)
                if boundary[axis] == "reservoir":
                    column[outside] = [ghost_index[tuple(int(v) for v in c)]
                                       for c in moved[outside]]
        self.neighbours = neighbours.astype(np.int32)
        # Bonds, numbered for locality: the bond from site i in the + direction of the
        # k-th axis (last axis first) is dim * i + k (if that neighbour exists, lattice
        # site or ghost); the bond to a ghost g = N + q in a - direction is dim * N + q. Ids
        # of missing bonds stay unused.
        M = dim * N + self.ghosts
        bond_sites = np.full((M, 2), -1, dtype=np.int64)
        site_bonds = np.full((N, z), -1, dtype=np.int64)
        ghost_neighbour = np.full(self.ghosts, -1, dtype=np.int64)
        sites = np.arange(N)
        for k in range(dim):
            plus, minus = neighbours[:, 2 * k], neighbours[:, 2 * k + 1]
            ok = plus >= 0
            ids = dim * sites[ok] + k
            bond_sites[ids, 0], bond_sites[ids, 1] = sites[ok], plus[ok]
            site_bonds[ok, 2 * k] = ids
            ghost = plus >= N
            ghost_neighbour[plus[ghost] - N] = sites[ghost]
            inner = (minus >= 0) & (minus < N)
            site_bonds[inner, 2 * k + 1] = dim * minus[inner] + k
            ghost = minus >= N
            ids = dim * N + minus[ghost] - N
            bond_sites[ids, 0], bond_sites[ids, 1] = sites[ghost], minus[ghost]
            site_bonds[ghost, 2 * k + 1] = ids
            ghost_neighbour[minus[ghost] - N] = sites[ghost]
        self.bond_sites = bond_sites.astype(np.int32)
        self.site_bonds = site_bonds.astype(np.int32)
        self.ghost_neighbour = ghost_neighbour.astype(np.int32)
        self.dim = dim
        for array in (self.neighbours, self.bond_sites, self.site_bonds,
                      self.ghost_coordinates, self.ghost_neighbour):
            array.setflags(write=False)

    @property
    def bonds(self) -> int:
        """Size ``M`` of the bond id space (some ids may be unused: see ``bond_sites``)."""
        return len(self.bond_sites)


def normalise(shape, boundary) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Validated ``(shape, boundary)`` tuples (one boundary per axis).

    Raises:
        ValueError: On a bad shape or boundary, with what to give instead.
    """
    try:
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"shape must be an integer or a tuple of 1 or 2 integers, got {shape!r}"
        ) from None
    if len(shape) not in (1, 2):
        raise ValueError(
            f"shape must be (L,) for a chain or (Ly, Lx) for a square lattice, got {shape}"
        )
    if isinstance(boundary, str):
        boundary = (boundary,) * len(shape)
    boundary = tuple(boundary)
    if len(boundary) != len(shape) or any(b not in BOUNDARIES for b in boundary):
        raise ValueError(
            f"boundary must be one of {BOUNDARIES} or a tuple of them, one per axis of the "
            f"shape {shape}, got {boundary!r}"
        )
    for n, b in zip(shape, boundary):
        if n < (2 if b == "periodic" else 1):
            raise ValueError(
                f"every side must have at least {2 if b == 'periodic' else 1} sites "
                f"({b} axis), got shape {shape}"
            )
    return shape, boundary


@functools.lru_cache(maxsize=32)
def geometry(shape: tuple[int, ...], boundary: tuple[str, ...]) -> Geometry:
    """The (cached) :class:`Geometry` of a validated shape and boundary."""
    return Geometry(shape, boundary)
