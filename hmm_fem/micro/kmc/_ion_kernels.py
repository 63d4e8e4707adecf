"""Compiled (numba) kernels of vacancy-mediated ion hopping on a periodic square lattice.

An ion hops to a vacant nearest neighbour. Its rate depends on the hop's direction ``d``
(``0: +x, 1: -x, 2: +y, 3: -y``; a bias field along x) and on the number ``n`` (0..3) of
occupied neighbours the ion leaves behind (a nearest-neighbour interaction), so the
n-fold way runs over ``C = 16`` classes ``c = 4 d + n``, each with the list of the ion
sites that can hop in its direction (Bortz, Kalos & Lebowitz, J. Comput. Phys. 17, 10,
1975). After a hop only the two sites involved and their neighbours change class.

Membership of site ``s`` of lattice ``b`` in direction ``d``: ``cls[b, s, d]`` (-1: none)
and its position ``pos[b, s, d]`` in ``lst[b, c, :cnt[b, c]]``.

Random numbers: the xoshiro256+ streams of the lattice KMC engine (:mod:`._kernels`).
"""

import numpy as np
from numba import njit

from ._kernels import _below, uniform

# Unit displacements of the four directions.
_DX = np.array([1, -1, 0, 0], dtype=np.int64)
_DY = np.array([0, 0, 1, -1], dtype=np.int64)
CLASSES = 16


@njit(cache=True, error_model="numpy")
def _refresh(b, s, occ, nbr, cls, pos, lst, cnt):
    """Bring the four memberships of site ``s`` up to date.

    Site ``s`` hopping in direction ``d`` belongs to class ``4 d + n`` (``n`` its occupied
    neighbours) if it holds an ion and the neighbour in ``d`` is vacant, else to none (-1).
    """
    n = -1  # no ion: no membership
    if occ[b, s] != 0:
        n = occ[b, nbr[s, 0]] + occ[b, nbr[s, 1]] + occ[b, nbr[s, 2]] + occ[b, nbr[s, 3]]
    for d in range(4):
        new = -1
        if n >= 0 and occ[b, nbr[s, d]] == 0:
            new = 4 * d + n
        old = cls[b, s, d]
        if new == old:
            continue
        if old >= 0:
            p = pos[b, s, d]
            last = cnt[b, old] - 1
            moved = lst[b, old, last]
            lst[b, old, p] = moved
            pos[b, moved, d] = p
            cnt[b, old] = last
        if new >= 0:
            q = cnt[b, new]
            lst[b, new, q] = s
            pos[b, s, d] = q
            cnt[b, new] = q + 1
        cls[b, s, d] = new


@njit(cache=True, error_model="numpy")
def build(occ, nbr, cls, pos, lst, cnt):
    """Classes of all sites of all lattices from the occupations ``occ`` (B, M)."""
    B, M = occ.shape
    for b in range(B):
        for c in range(cnt.shape[1]):
            cnt[b, c] = 0
        for s in range(M):
            for d in range(4):
                cls[b, s, d] = -1
        for s in range(M):
            _refresh(b, s, occ, nbr, cls, pos, lst, cnt)


@njit(cache=True, error_model="numpy")
def run(occ, ion_at, disp, nbr, cls, pos, lst, cnt, rates, rng, time, until, max_events,
        hops, flux, tau):
    """Advance every lattice ``b`` to time ``until[b]`` or by ``max_events`` hops.

    Args:
        occ: (B, M) int8 occupations (1: ion).
        ion_at: (B, M) int32 label of the ion on a site (-1: vacancy).
        disp: (B, N, 2) int64 unwrapped displacements of the ions, in lattice spacings.
        nbr: (M, 4) neighbour sites in the four directions.
        cls: (B, M, 4) class of each site and direction (-1: none).
        pos: (B, M, 4) position of each membership in its class list.
        lst: (B, C, M) the class lists of sites.
        cnt: (B, C) the class sizes.
        rates: (C,) rate of a hop of each class (the same for every lattice).
        rng: (B, 4) xoshiro256+ states.
        time: (B,) clocks, advanced.
        until: (B,) end times (``inf``: no time limit).
        max_events: largest number of hops per lattice in this call (-1: no limit).
        hops: (B, 4) hop counters per direction, incremented.
        flux: (B, 2) time integrals of the expected net hop rates along x and y
            (``sum_c (+-) rate_c cnt_c`` between events, times the expected waiting time
            ``1 / R``): an estimator of the drift with less noise than the hop counts.
        tau: (B,) sums of the expected waiting times ``1 / R`` (the clock of ``flux``).

    Returns:
        (B,) number of hops made per lattice in this call.
    """
    B = occ.shape[0]
    C = rates.shape[0]
    done = np.zeros(B, dtype=np.int64)
    for b in range(B):
        st = rng[b]
        while max_events < 0 or done[b] < max_events:
            total = 0.0
            jx = 0.0
            jy = 0.0
            for c in range(C):
                w = rates[c] * cnt[b, c]
                total += w
                d = c // 4
                if d == 0:
                    jx += w
                elif d == 1:
                    jx -= w
                elif d == 2:
                    jy += w
                else:
                    jy -= w
            if total <= 0.0:  # no hop possible: the clock jumps to the end
                if until[b] > time[b]:
                    time[b] = until[b]
                break
            dt = -np.log(1.0 - uniform(st)) / total
            if time[b] + dt > until[b]:  # memoryless: stopping here is exact
                time[b] = until[b]
                break
            time[b] += dt
            flux[b, 0] += jx / total
            flux[b, 1] += jy / total
            tau[b] += 1.0 / total
            # The class, in proportion to its total rate, then a member uniformly.
            u = uniform(st) * total
            c = C - 1
            for k in range(C):
                w = rates[k] * cnt[b, k]
                if u < w:
                    c = k
                    break
                u -= w
            while cnt[b, c] == 0:  # round-off at the end of the scan
                c -= 1
            s = lst[b, c, _below(st, cnt[b, c])]
            d = c // 4
            t = nbr[s, d]
            ion = ion_at[b, s]
            occ[b, s] = 0
            occ[b, t] = 1
            ion_at[b, t] = ion
            ion_at[b, s] = -1
            disp[b, ion, 0] += _DX[d]
            disp[b, ion, 1] += _DY[d]
            hops[b, d] += 1
            done[b] += 1
            _refresh(b, s, occ, nbr, cls, pos, lst, cnt)
            _refresh(b, t, occ, nbr, cls, pos, lst, cnt)
            for e in range(4):
                _refresh(b, nbr[s, e], occ, nbr, cls, pos, lst, cnt)
                _refresh(b, nbr[t, e], occ, nbr, cls, pos, lst, cnt)
    return done
