"""Compiled (numba) kernels of the rejection-free lattice KMC engine.

The engine is the n-fold way of Bortz, Kalos & Lebowitz (J. Comput. Phys. 17, 10, 1975)
with one class per *condition* of the events: a species for site events, an unordered
species pair for pair events. Each class keeps the list of its members (sites, or bonds) with
an index map for O(1) insertion and removal; the events sharing a condition share its list.
A step draws the waiting time from the total rate ``R = sum_c W_c n_c`` (``W_c`` the sum of
the rates of the class's events, ``n_c`` its members), picks a class with probability
``W_c n_c / R``, a member uniformly, an event of the class by rate, applies it, and updates
the classes of the changed sites and of their bonds (a site has ``z`` bonds). In the
well-mixed mode pair classes have no lists: a pair is two distinct random sites of the two
species, and ``n_c`` is the number of such pairs scaled to ``z N / 2`` bonds.

Random numbers: xoshiro256+ (Blackman & Vigna, 2018), one stream per lattice (its state is
part of the lattice state), the top 53 bits as a double in [0, 1).
"""

import numpy as np
from numba import njit

# Lattice species are int8; class, list and site indices int32/int64.

_U53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, error_model="numpy")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True, error_model="numpy")
def uniform(st):
    """A double in [0, 1) from the xoshiro256+ state ``st`` (4 uint64, updated)."""
    s0 = st[0]
    s1 = st[1]
    s2 = st[2]
    s3 = st[3]
    result = s0 + s3
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    st[0] = s0
    st[1] = s1
    st[2] = s2
    st[3] = s3
    return (result >> np.uint64(11)) * _U53


@njit(cache=True, error_model="numpy")
def _below(st, n):
    """A uniform integer in [0, n) (n >= 1)."""
    k = np.int64(uniform(st) * n)
    return k if k < n else n - 1


@njit(cache=True, error_model="numpy")
def _pick_event(st, ptr, events, c, rates_b, total):
    """One event of class ``c`` (``events[ptr[c]:ptr[c + 1]]``) in proportion to its rate.

    ``total`` is the class's summed rate; a class of one event draws no number.
    """
    e = events[ptr[c]]
    if ptr[c + 1] - ptr[c] > 1:
        u = uniform(st) * total
        for q in range(ptr[c], ptr[c + 1]):
            e = events[q]
            if u < rates_b[e]:
                break
            u -= rates_b[e]
    return e


@njit(cache=True, error_model="numpy")
def _pair_products(e, si, ev_r1, ev_r2, ev_p1, ev_p2, st):
    """Products ``(pi, pk)`` of pair event ``e`` for the site holding ``si`` and its partner.

    The site takes the product of the reactant it holds; a symmetric pair (equal reactants)
    with unequal products is oriented at random (one draw from ``st``).
    """
    if ev_r1[e] != ev_r2[e]:
        if si == ev_r1[e]:
            return ev_p1[e], ev_p2[e]
        return ev_p2[e], ev_p1[e]
    if ev_p1[e] != ev_p2[e] and uniform(st) < 0.5:
        return ev_p2[e], ev_p1[e]
    return ev_p1[e], ev_p2[e]


@njit(cache=True, error_model="numpy")
def build_lists(s, N, S, listed, paired, bond_sites, pcls, slist, scount, spos, bcls, blist,
                bcount, bpos):
    """Species lists and bond classes of all lattices from their species ``s``."""
    B = s.shape[0]
    M = bond_sites.shape[0]
    for b in range(B):
        for k in range(S):
            scount[b, k] = 0
        for i in range(N):
            k = s[b, i]
            if listed[k]:
                spos[b, i] = scount[b, k]
                slist[b, k, scount[b, k]] = i
            scount[b, k] += 1
        for c in range(bcount.shape[1]):
            bcount[b, c] = 0
        for j in range(M):
            if bond_sites[j, 0] < 0:  # an unused bond id
                bcls[b, j] = -1
                continue
            a = s[b, bond_sites[j, 0]]
            d = s[b, bond_sites[j, 1]]
            c = pcls[a * S + d] if (paired[a] or paired[d]) else -1
            bcls[b, j] = c
            if c >= 0:
                bpos[b, j] = bcount[b, c]
                blist[b, c, bcount[b, c]] = j
                bcount[b, c] += 1


@njit(cache=True, error_model="numpy")
def _set_site(b, i, new, s, S, listed, paired, slist, scount, spos, nbr, dim, N, pcls,
              bcls, blist, bcount, bpos):
    """Site ``i`` of lattice ``b`` takes species ``new``; lists and bond classes follow.

    ``listed[k]``: species ``k`` keeps a site list (it has site events, or pair events in
    the well-mixed mode); ``paired[k]``: it takes part in a pair class (its bonds are
    reclassified; all False in the well-mixed mode); ``pcls[a * S + c]`` the pair class of
    species ``a`` and ``c`` (-1: none). Bond ids as in :class:`Geometry` (computed here
    from the neighbours rather than read from a table: fewer cache lines per event).
    """
    old = s[b, i]
    if old == new:
        return
    s[b, i] = new
    if listed[old]:
        p = spos[b, i]
        n = scount[b, old] - 1
        last = slist[b, old, n]
        slist[b, old, p] = last
        spos[b, last] = p
    scount[b, old] -= 1
    if listed[new]:
        n = scount[b, new]
        spos[b, i] = n
        slist[b, new, n] = i
    scount[b, new] += 1
    if not (paired[old] or paired[new]):
        return
    base = new * S
    for d in range(nbr.shape[1]):
        nb = nbr[i, d]
        if nb < 0:
            continue
        if d % 2 == 0:
            j = dim * i + d // 2
        elif nb < N:
            j = dim * nb + d // 2
        else:
            j = dim * N + nb - N
        c = pcls[base + s[b, nb]]
        oc = bcls[b, j]
        if c == oc:
            continue
        if oc >= 0:
            p = bpos[b, j]
            n = bcount[b, oc] - 1
            last = blist[b, oc, n]
            blist[b, oc, p] = last
            bpos[b, last] = p
            bcount[b, oc] = n
        if c >= 0:
            n = bcount[b, c]
            bpos[b, j] = n
            blist[b, c, n] = j
            bcount[b, c] = n + 1
        bcls[b, j] = c


@njit(cache=True, error_model="numpy")
def _cascade(b, stack, top, N, S, s, nbr, dim, inst_ev, ev_r1, ev_r2, ev_p1, ev_p2, st,
             counts, gcounts, listed, paired, pcls, slist, scount, spos, bcls, blist, bcount,
             bpos, cand_d, cand_e):
    """Instantaneous pair events from the sites on ``stack[:top]`` (popped last first)."""
    z = nbr.shape[1]
    K = inst_ev.shape[0]
    while top > 0:
        top -= 1
        i = stack[top]
        si = s[b, i]
        ncand = 0
        for d in range(z):
            k = nbr[i, d]
            if k < 0:
                continue
            sk = s[b, k]
            for q in range(K):
                e = inst_ev[q]
                if (si == ev_r1[e] and sk == ev_r2[e]) or (si == ev_r2[e] and sk == ev_r1[e]):
                    cand_d[ncand] = d
                    cand_e[ncand] = e
                    ncand += 1
        if ncand == 0:
            continue
        w = _below(st, ncand)
        d = cand_d[w]
        e = cand_e[w]
        k = nbr[i, d]
        pi, pk = _pair_products(e, si, ev_r1, ev_r2, ev_p1, ev_p2, st)
        counts[b, e] += 1
        _set_site(b, i, pi, s, S, listed, paired, slist, scount, spos, nbr, dim, N, pcls,
                  bcls, blist, bcount, bpos)
        if k < N:
            _set_site(b, k, pk, s, S, listed, paired, slist, scount, spos, nbr, dim, N,
                      pcls, bcls, blist, bcount, bpos)
        else:
            gcounts[b, e] += 1
        if k < N and uniform(st) < 0.5:
            stack[top] = i
            stack[top + 1] = k
            top += 2
        elif k < N:
            stack[top] = k
            stack[top + 1] = i
            top += 2
        else:
            stack[top] = i
            top += 1
    return top


@njit(cache=True, error_model="numpy")
def relax(s, N, S, nbr, dim, inst_ev, ev_r1, ev_r2, ev_p1, ev_p2, rng, counts, gcounts,
          listed, paired, pcls, slist, scount, spos, bcls, blist, bcount, bpos):
    """Apply the instantaneous events everywhere (all sites checked in random order)."""
    B = s.shape[0]
    z = nbr.shape[1]
    stack = np.empty(2 * N + 2, dtype=np.int64)
    cand_d = np.empty(z * max(inst_ev.shape[0], 1), dtype=np.int64)
    cand_e = np.empty_like(cand_d)
    for b in range(B):
        st = rng[b]
        for i in range(N):
            stack[i] = i
        for i in range(N - 1, 0, -1):  # Fisher-Yates
            j = _below(st, i + 1)
            t = stack[i]
            stack[i] = stack[j]
            stack[j] = t
        _cascade(b, stack, N, N, S, s, nbr, dim, inst_ev, ev_r1, ev_r2, ev_p1, ev_p2,
                 st, counts, gcounts, listed, paired, pcls, slist, scount, spos, bcls, blist,
                 bcount, bpos, cand_d, cand_e)


@njit(cache=True, error_model="numpy")
def place(s, N, species_counts, rng):
    """Fill each lattice with ``species_counts[b, k]`` sites of species ``k``, at random."""
    B = s.shape[0]
    S = species_counts.shape[1]
    for b in range(B):
        st = rng[b]
        i = 0
        for k in range(S):
            for _ in range(species_counts[b, k]):
                s[b, i] = k
                i += 1
        for i in range(N - 1, 0, -1):
            j = _below(st, i + 1)
            t = s[b, i]
            s[b, i] = s[b, j]
            s[b, j] = t


@njit(cache=True, error_model="numpy")
def draw_ghosts(s, N, cumulative, rng):
    """Ghost species drawn from per-ghost cumulative probabilities ``(B, G, S)``."""
    B, G, S = cumulative.shape
    for b in range(B):
        st = rng[b]
        for g in range(G):
            u = uniform(st)
            k = 0
            while k < S - 1 and u >= cumulative[b, g, k]:
                k += 1
            s[b, N + g] = k


@njit(cache=True, error_model="numpy")
def run(s, N, S, nbr, dim, ghost_nbr, listed, paired, pcls, cls_a, cls_b, site_ptr,
        site_ev, cls_ptr, cls_ev, inst_ev, ev_r1, ev_r2, ev_p1, ev_p2, rates, rng, time, tnext,
        t_end, max_events, counts, gcounts, slist, scount, spos, bcls, blist, bcount, bpos,
        well_mixed, executed):
    """Advance every lattice ``b`` to ``t_end[b]`` or by ``max_events`` events.

    ``tnext[b]`` (NaN if unknown) is the time of the lattice's next event, drawn at an
    earlier call whose end came first; it is kept so that a run split into several calls
    is the same trajectory as one call. ``executed[b]`` receives the events executed
    (not counting the instantaneous ones, which ``counts`` has).
    """
    B = s.shape[0]
    C = cls_a.shape[0]
    z = nbr.shape[1]
    stack = np.empty(2 * N + 2, dtype=np.int64)
    cand_d = np.empty(z * max(inst_ev.shape[0], 1), dtype=np.int64)
    cand_e = np.empty_like(cand_d)
    Wsite = np.zeros(S)
    Wpair = np.zeros(C)
    has_inst = inst_ev.shape[0] > 0
    dimN = dim * N
    scale = z / (N - 1.0) if N > 1 else 0.0  # well-mixed pairs per (n_a n_b) product
    for b in range(B):
        st = rng[b]
        for k in range(S):
            w = 0.0
            for q in range(site_ptr[k], site_ptr[k + 1]):
                w += rates[b, site_ev[q]]
            Wsite[k] = w
        for c in range(C):
            w = 0.0
            for q in range(cls_ptr[c], cls_ptr[c + 1]):
                w += rates[b, cls_ev[q]]
            Wpair[c] = w
        t = time[b]
        tend = t_end[b]
        done = 0
        while done < max_events:
            R = 0.0
            for k in range(S):
                R += Wsite[k] * scount[b, k]
            for c in range(C):
                if well_mixed:
                    na = scount[b, cls_a[c]]
                    if cls_a[c] == cls_b[c]:
                        R += Wpair[c] * 0.5 * scale * na * (na - 1)
                    else:
                        R += Wpair[c] * scale * na * scount[b, cls_b[c]]
                else:
                    R += Wpair[c] * bcount[b, c]
            if R <= 0.0:  # absorbing state: nothing ever happens again
                tnext[b] = np.inf
                if tend < np.inf:
                    t = tend
                break
            if np.isnan(tnext[b]):
                tn = t - np.log(1.0 - uniform(st)) / R
            else:
                tn = tnext[b]
            if tn > tend:
                tnext[b] = tn
                t = tend
                break
            tnext[b] = np.nan
            t = tn
            # The class.
            u = uniform(st) * R
            chosen = -1
            for k in range(S):
                a = Wsite[k] * scount[b, k]
                if a > 0.0:
                    chosen = k
                    if u < a:
                        break
                    u -= a
            else:
                for c in range(C):
                    if well_mixed:
                        na = scount[b, cls_a[c]]
                        if cls_a[c] == cls_b[c]:
                            a = Wpair[c] * 0.5 * scale * na * (na - 1)
                        else:
                            a = Wpair[c] * scale * na * scount[b, cls_b[c]]
                    else:
                        a = Wpair[c] * bcount[b, c]
                    if a > 0.0:
                        chosen = S + c
                        if u < a:
                            break
                        u -= a
            top = 0
            if chosen < S:
                k = chosen
                i = slist[b, k, _below(st, scount[b, k])]
                e = _pick_event(st, site_ptr, site_ev, k, rates[b], Wsite[k])
                _set_site(b, i, ev_p1[e], s, S, listed, paired, slist, scount, spos, nbr,
                          dim, N, pcls, bcls, blist, bcount, bpos)
                counts[b, e] += 1
                stack[0] = i
                top = 1
            else:
                c = chosen - S
                if well_mixed:
                    ka = cls_a[c]
                    kb = cls_b[c]
                    ia = _below(st, scount[b, ka])
                    if ka == kb:
                        ib = _below(st, scount[b, ka] - 1)
                        if ib >= ia:
                            ib += 1
                    else:
                        ib = _below(st, scount[b, kb])
                    i = slist[b, ka, ia]
                    k2 = slist[b, kb, ib]
                else:
                    j = blist[b, c, _below(st, bcount[b, c])]
                    if j < dimN:
                        i = j // dim
                        k2 = nbr[i, 2 * (j - dim * i)]
                    else:
                        k2 = j - dimN + N
                        i = ghost_nbr[j - dimN]
                e = _pick_event(st, cls_ptr, cls_ev, c, rates[b], Wpair[c])
                pi, pk = _pair_products(e, s[b, i], ev_r1, ev_r2, ev_p1, ev_p2, st)
                counts[b, e] += 1
                _set_site(b, i, pi, s, S, listed, paired, slist, scount, spos, nbr, dim, N,
                          pcls, bcls, blist, bcount, bpos)
                if k2 < N:
                    _set_site(b, k2, pk, s, S, listed, paired, slist, scount, spos, nbr,
                              dim, N, pcls, bcls, blist, bcount, bpos)
                    if uniform(st) < 0.5:
                        stack[0] = i
                        stack[1] = k2
                    else:
                        stack[0] = k2
                        stack[1] = i
                    top = 2
                else:
                    gcounts[b, e] += 1
                    stack[0] = i
                    top = 1
            done += 1
            if has_inst:
                _cascade(b, stack, top, N, S, s, nbr, dim, inst_ev, ev_r1, ev_r2, ev_p1,
                         ev_p2, st, counts, gcounts, listed, paired, pcls, slist, scount, spos,
                         bcls, blist, bcount, bpos, cand_d, cand_e)
        time[b] = t
        executed[b] = done


@njit(cache=True, error_model="numpy")
def uniforms(rng):
    """One uniform double from each lattice's stream, ``(B,)``."""
    out = np.empty(rng.shape[0])
    for b in range(rng.shape[0]):
        out[b] = uniform(rng[b])
    return out
