"""Adaptive activation of micro solves: which macro points run the micro model.

A :class:`~hmm_fem.coupling.Dispatcher` given an ``activation`` strategy lets it decide,
at every collective evaluation, which distinct micro states are solved and how the other
points are answered. Two strategies:

* :class:`AdaptiveActivation` (ours): **one global tolerance**, the relative error of the
  micro results that make the macro response (``K`` for a conductivity cell, ``P`` for a
  hyperelastic one). A state is answered from the states already solved when the error
  indicator says that the answer is within the tolerance, and solved otherwise.
* :class:`SimilarityActivation` (the baseline): the similarity criterion of the preCICE
  Micro Manager, with its refining and coarsening constants.

**Our predictors and indicators.** The solved states form a set ``S`` (rank-identical:
the dispatcher shares every result); neighbours are found with a ``scipy.spatial.cKDTree``
(``O(log |S|)`` per query, ``O(N log N)`` per evaluation).

* *With the model's tangents* (``tangents={"K": "dK_dT"}``, ``columns=["T"]``; the
  recommended mode): among the solved states with the same values of the other columns
  (a volume fraction), a first-order Taylor expansion from the nearest, ``s1`` at
  distance ``d1``: ``y(s1) + G(s1) (x - s1)``. Indicator: the larger of the second-order
  bound ``M d1^2 / 2`` (``M`` the largest difference quotient of the tangent over the
  next neighbours) and the share ``d1 / (d1 + d2)`` of the discrepancy between the
  predictions from ``s1`` and from the second nearest ``s2``; relative to the norm of
  the prediction, the largest over the checked entries. Fewer than two solved states
  on the level: solve.
* *Without tangents*: the ``k = 2 (s + 1)`` nearest solved states (``s`` state columns,
  coordinates scaled by the range of the states met) are fitted by an affine map in least
  squares; the prediction is the fit at ``x``. Indicator: the largest leave-one-out
  residual of the fit (closed form, ``r_j / (1 - h_jj)``), relative, times
  ``max(1, (r / w)^2)`` (``r`` the distance from ``x`` to its farthest neighbour, ``w``
  the largest distance of a neighbour from their centroid: extrapolation). Not trusted
  (solve) with fewer than ``s + 2`` solved states, when ``x`` is not in the affine span
  of its neighbours or with fewer than two residual degrees of freedom.

**Which states are solved.** Per evaluation, in rounds: every state whose indicator
exceeds the tolerance is a candidate; candidates are taken by decreasing indicator (ties
by the state's order), skipping one within its radius of a candidate already taken (the
distance to its nearest solved state; with tangents at most ``sqrt(2 tol norm(y) / M)``,
where the bound reaches the tolerance): solving that one will likely answer it; the taken
ones are
solved (dealt over the ranks, results shared), and the rest is checked again, until every
state passes. The order, the tree and the cache are the same on every rank, so the
decisions and the answers do not depend on the number of ranks.

**What the tolerance guarantees, and what not.** If the indicator bounds the error, every
point's checked micro results (``K``) are within ``tolerance`` relative of the true ones,
so the macro flux at every point is within about ``tolerance`` relative (times the
conditioning of ``K``), and a linear(ised) macro solve is perturbed by
``tolerance / (1 - tolerance)`` in the energy norm (first Strang lemma). It does not
guarantee: that the indicator is a bound (it is an estimate; its coverage is measured in
the tests and the benchmark), the accumulation over many time steps of a transient run,
or the error of tangents that are not checked (they only steer Newton).

**Output.** The dispatcher adds three per-point entries to the response's ``solutions``
(so :func:`~hmm_fem.io.write_heat_fields` writes them as cell fields and
``MicroCoupling.cell_averages`` averages them): ``micro_active`` (1: answered by a true
solve in the current macro step, 0: predicted / copied in all its evaluations so far),
``micro_error_estimate`` (the last evaluation's indicator; 0 where solved) and
``micro_seconds`` (the solve time of the point's states in the step's evaluations).

The strategies serve deterministic models without history and without time dependence
(whose solve is a function of the state row alone); a failed solve aborts collectively.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "ActivationStrategy",
    "ActivationStatistics",
    "AdaptiveActivation",
    "SimilarityActivation",
    "ACTIVE_KEY",
    "ESTIMATE_KEY",
    "SECONDS_KEY",
]

#: Per-point solution entry: 1 where a true micro solve answered, 0 where predicted/copied.
ACTIVE_KEY = "micro_active"
#: Per-point solution entry: the estimated relative error (0 where solved).
ESTIMATE_KEY = "micro_error_estimate"
#: Per-point solution entry: seconds of the micro solve of the point's state in this
#: evaluation (0 where it was not solved in it).
SECONDS_KEY = "micro_seconds"


@dataclass
class ActivationStatistics:
    """Counters of an activation strategy (the same on every rank).

    Attributes:
        solves: Micro solves the strategy asked for (all ranks).
        predicted_states: Distinct states answered without a solve of their own.
        rounds: Rounds of solves (:class:`AdaptiveActivation`).
        evaluations: Collective evaluations seen.
    """

    solves: int = 0
    predicted_states: int = 0
    rounds: int = 0
    evaluations: int = 0


class ActivationStrategy(abc.ABC):
    """What a :class:`~hmm_fem.coupling.Dispatcher` asks an activation strategy.

    Every method is called on every rank with rank-identical arguments except where said.
    """

    def __init__(self):
        self.statistics = ActivationStatistics()
        self._fields: dict[bytes, tuple[float, float, float]] = {}
        self._marks: np.ndarray | None = None
        self._marks_step: int | None = None
        self._step_now: int | None = None

    def check_model(self, model) -> None:
        """Raise ``ValueError`` for a model whose solve is not a function of its state."""
        if model.history or model.time_dependent or model.stochastic:
            raise ValueError(
                f"{type(self).__name__} answers states from other solved states; "
                f"{type(model).__name__} declares history, time dependence or noise, whose "
                "solves are not a function of the state row alone: use no activation"
            )

    def redirect(self, dispatcher, states: np.ndarray, keys: np.ndarray, ids: np.ndarray):
        """Change the local points' states and keys before they are made unique.

        Args:
            dispatcher: The dispatcher.
            states: ``(n, s)`` local micro states.
            keys: ``(n, m)`` their keys.
            ids: ``(n,)`` global point ids.

        Returns:
            ``(states, keys)`` (default: unchanged).
        """
        return states, keys

    @abc.abstractmethod
    def resolve(self, dispatcher, keys: np.ndarray, states: np.ndarray, ids: np.ndarray):
        """Solve what is needed of the missing local keys; answer the others (collective).

        Args:
            dispatcher: The dispatcher (its cache holds every solved key, on every rank).
            keys: ``(q, m)`` this rank's distinct keys that are not in the cache.
            states: ``(q, s)`` their states.
            ids: ``(q,)`` the smallest global point id needing each.

        Returns:
            Key bytes -> result dict, for the keys answered without a solve; every other
            key of ``keys`` must be in the dispatcher's cache afterwards.
        """

    def point_fields(self, key_bytes: Sequence[bytes], inverse: np.ndarray) -> dict:
        """The per-point output entries (see the module docstring), this rank's points.

        ``micro_active`` and ``micro_seconds`` accumulate over the evaluations of the
        macro step (a Newton solve): 1 where the point's state was solved in any of them,
        and the seconds of those solves; ``micro_error_estimate`` is the last evaluation's.
        """
        rows = np.array(
            [self._fields.get(kb, (1.0, 0.0, 0.0)) for kb in key_bytes], dtype=np.float64
        ).reshape(-1, 3)
        rows = rows[inverse] if len(inverse) else np.zeros((0, 3))
        if (
            self._marks is None
            or self._marks_step != self._step_now
            or len(self._marks) != len(rows)
        ):
            self._marks = np.zeros((len(rows), 2))
            self._marks_step = self._step_now
        self._marks[:, 0] = np.maximum(self._marks[:, 0], rows[:, 0])
        self._marks[:, 1] += rows[:, 2]
        return {
            ACTIVE_KEY: self._marks[:, 0].copy(),
            ESTIMATE_KEY: rows[:, 1],
            SECONDS_KEY: self._marks[:, 1].copy(),
        }

    # -- shared helpers ------------------------------------------------------------------------
    @staticmethod
    def _gather_missing(dispatcher, keys, states, ids):
        """All ranks' missing keys, unique and sorted (rank-independent), with states and ids."""
        comm = dispatcher.comm
        local = (keys, states, ids)
        parts = comm.allgather(local) if comm.size > 1 else [local]
        all_keys = np.concatenate([p[0] for p in parts]).reshape(-1, keys.shape[1])
        all_states = np.concatenate([p[1] for p in parts]).reshape(-1, states.shape[1])
        all_ids = np.concatenate([p[2] for p in parts]).astype(np.int64)
        if not len(all_keys):
            return all_keys, all_states, all_ids
        unique, pick, back = np.unique(all_keys, axis=0, return_index=True, return_inverse=True)
        first = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, back.reshape(-1), all_ids)
        return unique, all_states[pick], first

    def _solve(self, dispatcher, keys, states, ids) -> None:
        """Solve ``keys`` (rank-identical), dealt over the ranks; record their seconds."""
        seconds = dispatcher.solve_keys(keys, states, ids)
        for kb, s in seconds.items():
            self._fields[kb] = (1.0, 0.0, s)
        self.statistics.solves += len(keys)


def _relative_norms(diff: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``norm(diff) / norm(reference)`` over the last axis; 0/0 is 0, x/0 is inf."""
    num = np.linalg.norm(diff, axis=-1)
    den = np.linalg.norm(reference, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))
    return out


class AdaptiveActivation(ActivationStrategy):
    """Solve a micro state only where the answer from solved states is not good enough.

    See the module docstring for the predictor, the indicator, the rounds and what the
    tolerance guarantees.

    Example:
        >>> heat = TransientHeat(mesh, model, ..., activation=AdaptiveActivation(1e-3, ["K"]))

    Args:
        tolerance: The largest estimated relative error of a predicted result (> 0).
        entries: The solve entries whose error is checked and bounded by the tolerance
            (default: all). Check the ones that make the response (``["K"]`` for a
            conductivity cell): a tangent (``dK_dT``) only steers Newton, and it is
            predicted with the same fit but not checked.
        neighbours: States in each fit (default ``2 (s + 1)`` for ``s`` state columns;
            at least ``s + 2``).

    Attributes:
        statistics: :class:`ActivationStatistics`.
    """

    def __init__(
        self,
        tolerance: float,
        entries: Sequence[str] | None = None,
        tangents: Mapping[str, str] | None = None,
        columns: Sequence[str] | None = None,
        neighbours: int | None = None,
    ):
        super().__init__()
        if not (np.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"AdaptiveActivation: tolerance must be positive, got {tolerance}")
        self.tolerance = float(tolerance)
        self.entries = None if entries is None else tuple(entries)
        self.tangents = None if tangents is None else dict(tangents)
        self.columns = None if columns is None else tuple(columns)
        self.neighbours = None if neighbours is None else int(neighbours)
        if self.tangents is not None and self.entries is not None:
            untangented = [e for e in self.entries if e not in self.tangents]
            if untangented:
                raise ValueError(
                    f"AdaptiveActivation: checked entries {untangented} have no tangent in "
                    f"tangents={self.tangents}; give one for every checked entry"
                )
        self._differentiated: np.ndarray | None = None

    def check_model(self, model) -> None:
        """As the base class; also resolve ``columns`` to state column indices."""
        super().check_model(model)
        names = list(model.state_names)
        if self.columns is None:
            self._differentiated = np.arange(len(names))
            return
        unknown = [c for c in self.columns if c not in names]
        if unknown:
            raise ValueError(
                f"AdaptiveActivation: columns {unknown} are not state columns of "
                f"{type(model).__name__} (state_names: {names})"
            )
        self._differentiated = np.array([names.index(c) for c in self.columns], dtype=int)

    # -- the predictor -------------------------------------------------------------------------
    def predict(self, X: np.ndarray, Y: dict[str, np.ndarray], queries: np.ndarray):
        """Predictions at ``queries`` from solved states ``X`` (see the module docstring).

        Args:
            X: ``(S, s)`` solved states (rows in a fixed order).
            Y: Entry name -> ``(S, ...)`` their results.
            queries: ``(q, s)`` states to predict.

        Returns:
            ``(predictions, indicator, radius)``: entry name -> ``(q, ...)`` predictions,
            the ``(q,)`` relative error indicator (``inf`` where no prediction is trusted),
            and the ``(q,)`` radius around each query within which a solve there would
            likely answer the others (used to pick the states solved per round).
        """
        if self.tangents is None:
            return self._predict_affine(X, Y, queries)
        return self._predict_taylor(X, Y, queries)

    def _predict_taylor(self, X, Y, queries):
        """First-order Taylor from the nearest solved state with the model's tangents.

        The solved states with the same non-differentiated columns (a volume fraction)
        are the candidates. From the nearest, ``s1`` at distance ``d1``, the prediction is
        ``y(s1) + G(s1) (x - s1)``. The indicator (relative, largest over the checked
        entries) is the larger of the second-order bound ``M d1^2 / 2``, with ``M`` the
        largest difference quotient ``norm(G(sj) - G(s1)) / norm(sj - s1)`` over the next
        ``c + 1`` neighbours (``c`` differentiated columns), and the share
        ``d1 / (d1 + d2)`` of the discrepancy between the predictions from ``s1`` and the
        second nearest ``s2`` (at ``d2``). Entries without a tangent are copied from ``s1``.
        """
        q, s = queries.shape
        names = list(Y)
        predictions = {n: np.zeros((q, *Y[n].shape[1:])) for n in names}
        indicator = np.full(q, np.inf)
        radius = np.full(q, np.inf)
        if q == 0 or len(X) == 0:
            return predictions, indicator, radius
        dcols = self._differentiated
        lcols = np.setdiff1d(np.arange(s), dcols)
        c = len(dcols)
        checked = [n for n in names if n in (self.entries or tuple(self.tangents))]
        level_of_x = [row.tobytes() for row in X[:, lcols]]
        level_of_q = [row.tobytes() for row in queries[:, lcols]]
        groups: dict[bytes, list[int]] = {}
        for i, lv in enumerate(level_of_x):
            groups.setdefault(lv, []).append(i)
        query_groups: dict[bytes, list[int]] = {}
        for j, lv in enumerate(level_of_q):
            query_groups.setdefault(lv, []).append(j)
        for lv, qs in query_groups.items():
            qs = np.array(qs)
            members = np.array(groups.get(lv, []), dtype=int)
            if len(members) == 0:
                continue
            Xl = X[members][:, dcols]
            Ql = queries[qs][:, dcols]
            k = min(len(members), c + 2)
            dist, idx = cKDTree(Xl).query(Ql, k=k)
            dist, idx = dist.reshape(len(qs), k), idx.reshape(len(qs), k)
            radius[qs] = dist[:, 0]
            near = members[idx]  # (m, k) rows of X
            step1 = Ql - Xl[idx[:, 0]]  # (m, c)
            worst = np.zeros(len(qs))
            curvature_radius = np.full(len(qs), np.inf)
            for name in names:
                y = Y[name].reshape(len(X), -1)
                if name not in self.tangents:
                    predictions[name][qs] = Y[name][near[:, 0]]
                    continue
                G = Y[self.tangents[name]].reshape(len(X), y.shape[1], c)
                p1 = y[near[:, 0]] + np.einsum("mac,mc->ma", G[near[:, 0]], step1)
                predictions[name][qs] = p1.reshape(len(qs), *Y[name].shape[1:])
                if name not in checked or k < 2:
                    continue
                dsq1 = dist[:, 0] ** 2
                quotient = np.zeros(len(qs))
                for j in range(1, k):
                    dG = np.linalg.norm(
                        (G[near[:, j]] - G[near[:, 0]]).reshape(len(qs), -1), axis=1
                    )
                    span = np.linalg.norm(Xl[idx[:, j]] - Xl[idx[:, 0]], axis=1)
                    quotient = np.maximum(quotient, dG / np.where(span > 0, span, np.inf))
                step2 = Ql - Xl[idx[:, 1]]
                p2 = y[near[:, 1]] + np.einsum("mac,mc->ma", G[near[:, 1]], step2)
                dsq2 = dist[:, 1] ** 2
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = np.where(
                        dsq1 + dsq2 > 0, np.sqrt(dsq1) / (np.sqrt(dsq1) + np.sqrt(dsq2)), 0.0
                    )
                bound = np.maximum(0.5 * quotient * dsq1, np.linalg.norm(p1 - p2, axis=1) * share)
                worst = np.maximum(worst, _relative_norms(bound[:, None], p1))
                size = np.linalg.norm(p1, axis=1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    curvature_radius = np.minimum(
                        curvature_radius,
                        np.where(
                            quotient > 0, np.sqrt(2 * self.tolerance * size / quotient), np.inf
                        ),
                    )
            trusted = np.full(len(qs), k >= 2)
            indicator[qs] = np.where(trusted, worst, np.inf)
            radius[qs] = np.where(trusted, np.minimum(radius[qs], curvature_radius), radius[qs])
        return predictions, indicator, radius

    def _predict_affine(self, X: np.ndarray, Y: dict[str, np.ndarray], queries: np.ndarray):
        """Affine least-squares predictions at ``queries`` from solved states ``X``.

        Args:
            X: ``(S, s)`` solved states (rows in a fixed order).
            Y: Entry name -> ``(S, ...)`` their results.
            queries: ``(q, s)`` states to predict.

        Returns:
            ``(predictions, indicator, radius)``: entry name -> ``(q, ...)`` predictions,
            the ``(q,)`` relative error indicator (``inf`` where the fit is not trusted),
            and the ``(q,)`` scaled distance to the nearest solved state.
        """
        q, s = queries.shape
        S = len(X)
        names = list(Y)
        predictions = {n: np.zeros((q, *Y[n].shape[1:])) for n in names}
        indicator = np.full(q, np.inf)
        radius = np.full(q, np.inf)
        if q == 0 or S == 0:
            return predictions, indicator, radius
        span = np.ptp(np.vstack([X, queries]), axis=0)
        scale = np.where(span > 0, span, 1.0)
        Xs, Qs = X / scale, queries / scale
        k = self.neighbours or 2 * (s + 1)
        k = max(k, s + 2)
        tree = cKDTree(Xs)
        kk = min(k, S)
        dist, idx = tree.query(Qs, k=kk)
        dist = dist.reshape(q, kk)
        idx = idx.reshape(q, kk)
        radius = dist[:, 0].copy()
        if S < s + 2:
            return predictions, indicator, radius
        Z = Xs[idx] - Qs[:, None, :]  # (q, k, s): neighbours relative to the query
        A = np.concatenate([np.ones((q, kk, 1)), Z], axis=2)  # (q, k, s + 1)
        U, sv, Vt = np.linalg.svd(A, full_matrices=False)
        cutoff = sv[:, :1] * max(kk, s + 1) * np.finfo(float).eps * 1e3
        keep = sv > cutoff
        rank = keep.sum(axis=1)
        # The intercept (the value at the query) is determined iff e0 is in the row space.
        V = np.where(keep[:, None, :], np.swapaxes(Vt, 1, 2), 0.0)  # (q, s+1, r)
        e0_in_row_space = np.einsum("qr,qr->q", V[:, 0, :], V[:, 0, :])
        identifiable = np.abs(1.0 - e0_in_row_space) < 1e-8
        trusted = identifiable & (kk - rank >= 2)
        inv_sv = np.where(keep, 1.0 / np.where(keep, sv, 1.0), 0.0)
        # Pseudo-inverse rows: beta = V diag(1/sv) U^T y; the intercept row is beta[0].
        pinv = np.einsum("qir,qr,qjr->qij", np.swapaxes(Vt, 1, 2), inv_sv, U)  # (q, s+1, k)
        centroid = Z.mean(axis=1, keepdims=True)
        width = np.linalg.norm(Z - centroid, axis=2).max(axis=1)
        reach = dist.max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(width > 0, np.maximum(1.0, (reach / width) ** 2), np.inf)
        # Leave-one-out residuals of the fit, closed form: r_j / (1 - h_jj), h = U U^T.
        leverage = np.einsum("qkr,qkr->qk", U * keep[:, None, :], U)
        with np.errstate(divide="ignore", invalid="ignore"):
            loo = np.where(leverage < 1 - 1e-10, 1.0 / (1.0 - leverage), np.inf)
        checked = names if self.entries is None else [n for n in names if n in self.entries]
        worst = np.zeros(q)
        for name in names:
            y = Y[name].reshape(S, -1)[idx]  # (q, k, m)
            beta = np.einsum("qik,qkm->qim", pinv, y)
            value = beta[:, 0, :]
            predictions[name] = value.reshape(q, *Y[name].shape[1:])
            if name in checked:
                residual = y - np.einsum("qki,qim->qkm", A, beta)
                norms = np.linalg.norm(residual, axis=2)
                misfit = np.where(
                    np.isfinite(loo), norms * np.where(np.isfinite(loo), loo, 0), np.inf
                )
                misfit = misfit.max(axis=1)
                worst = np.maximum(worst, _relative_norms(misfit[:, None], value))
        indicator = np.where(trusted, worst * factor, np.inf)
        return predictions, indicator, radius

    # -- the collective decision ---------------------------------------------------------------
    def resolve(self, dispatcher, keys, states, ids):
        """Rounds of solves until every missing state's indicator is within the tolerance."""
        self.statistics.evaluations += 1
        self._fields = {}
        self._step_now = dispatcher.clock.step
        width = states.shape[1] if states.ndim == 2 else 0
        if width == 0:
            raise ValueError(
                f"{type(dispatcher.model).__name__} has no state columns: its one state is "
                "solved once anyway; AdaptiveActivation has nothing to decide"
            )
        g_keys, g_states, g_ids = self._gather_missing(dispatcher, keys, states, ids)
        pending = np.arange(len(g_keys))
        answers: dict[bytes, dict] = {}
        estimates = np.zeros(len(g_keys))
        while len(pending):
            X, Y = self._solved(dispatcher, width)
            predictions, indicator, radius = self.predict(X, Y, g_states[pending])
            ok = indicator <= self.tolerance
            if ok.all():
                for j, g in enumerate(pending):
                    answers[g_keys[g].tobytes()] = {n: v[j] for n, v in predictions.items()}
                    estimates[g] = indicator[j]
                break
            failing = np.flatnonzero(~ok)
            take = self._select(g_states[pending[failing]], indicator[failing], radius[failing], X)
            chosen = pending[failing[take]]
            self.statistics.rounds += 1
            self._solve(dispatcher, g_keys[chosen], g_states[chosen], g_ids[chosen])
            pending = np.setdiff1d(pending, chosen)
        local = {kb.tobytes() for kb in keys}
        out = {}
        for g, key in enumerate(g_keys):
            kb = key.tobytes()
            if kb in answers:
                self._fields[kb] = (0.0, float(estimates[g]), 0.0)
                if kb in local:
                    out[kb] = answers[kb]
        self.statistics.predicted_states += sum(1 for kb in answers)
        return out

    @staticmethod
    def _solved(dispatcher, width):
        """The solved states and results of the cache, in sorted order (rank-identical)."""
        entries = list(dispatcher.cached_results())
        if not entries:
            return np.zeros((0, width)), {}
        rows = np.array([np.frombuffer(kb, dtype=np.float64)[:width] for kb, _ in entries])
        order = np.lexsort(rows.T[::-1])
        rows = dispatcher.grid_states(rows[order])
        results = [entries[i][1] for i in order]
        Y = {name: np.stack([r[name] for r in results]) for name in results[0]}
        return rows, Y

    def _select(self, states, indicator, radius, X) -> np.ndarray:
        """Indices of the failing states to solve this round (greedy, rank-independent).

        By decreasing indicator (ties: the states' order), a state is skipped when a state
        already taken lies within its radius (and, with tangents, on its level of the
        non-differentiated columns).
        """
        if self.tangents is None:
            span = np.ptp(np.vstack([X, states]) if len(X) else states, axis=0)
            Z = states / np.where(span > 0, span, 1.0)
            levels = [b""] * len(states)
        else:
            Z = states[:, self._differentiated]
            lcols = np.setdiff1d(np.arange(states.shape[1]), self._differentiated)
            levels = [row.tobytes() for row in states[:, lcols]]
        key = np.where(np.isfinite(indicator), indicator, np.inf)
        order = np.lexsort((*states.T[::-1], -key))
        taken: dict[bytes, list[int]] = {}
        chosen: list[int] = []
        for i in order:
            same = taken.setdefault(levels[i], [])
            if same and np.linalg.norm(Z[same] - Z[i], axis=1).min() < radius[i]:
                continue
            same.append(int(i))
            chosen.append(int(i))
        return np.array(chosen, dtype=np.int64)


class SimilarityActivation(ActivationStrategy):
    """The preCICE Micro Manager's similarity criterion, as a baseline strategy.

    Implemented from the Micro Manager's documentation ("Adaptivity" in the configuration
    reference: ``similarity_measure``, ``refining_constant``, ``coarsening_constant``,
    ``history_param``) and its ``micro_manager/adaptivity/adaptivity.py``
    (``AdaptivityCalculator``: ``_get_similarity_dists``, ``_update_active_sims``,
    ``_check_for_activation``, ``_check_for_deactivation``,
    ``_associate_inactive_to_active``); our own code. Per macro point ``i`` (a "micro
    simulation") with data ``d_i`` (here its micro state), once per macro step at its first
    evaluation (or at every evaluation, ``every_evaluation``):

    * similarity distances ``D_ij = exp(-history_param dt) D_ij(last step) + dt m(d_i, d_j)``,
      with
      ``m`` the L1 or L2 norm of ``d_i - d_j`` (``"L1"``, ``"L2"``) or of the relative
      difference ``(d_i - d_j) / max(abs(d_i), abs(d_j))`` (``"L1rel"``, ``"L2rel"``);
      ``dt`` is the macro step (1 for a steady or quasi-static step);
    * ``ref_tol = refining_constant * max D``, ``coarse_tol = coarsening_constant * ref_tol``;
    * an active point whose distance to another active point is below ``coarse_tol`` is
      deactivated (in order of the global point id); an inactive point whose distance to
      every active point exceeds ``ref_tol`` is activated;
    * every inactive point is associated to its most similar active point and answered by
      that point's micro result (at the active point's current state).

    Every point starts active. Like the Micro Manager it keeps the dense ``N x N`` matrix
    ``D`` (``O(N^2)`` memory and time): the baseline, not a method for large ``N``. It
    has no error estimate (``micro_error_estimate`` is the distance to the associated
    point); its constants must be tuned by hand.

    Args:
        refining_constant: ``C_r`` in ``[0, 1]``.
        coarsening_constant: ``C_c`` in ``[0, 1)``.
        similarity_measure: ``"L1"``, ``"L2"``, ``"L1rel"`` or ``"L2rel"``.
        history_param: ``lambda >= 0`` of the exponential history of the distances.
        every_evaluation: Update the active set at every evaluation (every Newton iterate,
            the Micro Manager's ``every_implicit_iteration``) instead of once per macro
            step, at its first evaluation (the default, as the Micro Manager's).
    """

    MEASURES = ("L1", "L2", "L1rel", "L2rel")

    def __init__(
        self,
        refining_constant: float,
        coarsening_constant: float,
        similarity_measure: str = "L2rel",
        history_param: float = 0.1,
        every_evaluation: bool = False,
    ):
        super().__init__()
        if similarity_measure not in self.MEASURES:
            raise ValueError(
                f"similarity_measure must be one of {self.MEASURES}, got {similarity_measure!r}"
            )
        if not 0 <= refining_constant <= 1 or not 0 <= coarsening_constant < 1:
            raise ValueError(
                "refining_constant must lie in [0, 1] and coarsening_constant in [0, 1), got "
                f"{refining_constant}, {coarsening_constant}"
            )
        if history_param < 0:
            raise ValueError(f"history_param must be >= 0, got {history_param}")
        self.refining_constant = float(refining_constant)
        self.coarsening_constant = float(coarsening_constant)
        self.similarity_measure = similarity_measure
        self.history_param = float(history_param)
        self.every_evaluation = bool(every_evaluation)
        self._ids: np.ndarray | None = None
        self._D: np.ndarray | None = None
        self._D_step: np.ndarray | None = None
        self._active: np.ndarray | None = None
        self._associated: np.ndarray | None = None
        self._step: int | None = None
        self._distance_to: np.ndarray | None = None

    @property
    def active_fraction(self) -> float:
        """Fraction of the points active after the last update."""
        return float(self._active.mean()) if self._active is not None else 1.0

    def _measure(self, data: np.ndarray) -> np.ndarray:
        diff = data[None, :, :] - data[:, None, :]
        if self.similarity_measure.endswith("rel"):
            big = np.maximum(np.abs(data[None, :, :]), np.abs(data[:, None, :]))
            with np.errstate(divide="ignore", invalid="ignore"):
                diff = np.nan_to_num(diff / big)
        order = 1 if self.similarity_measure.startswith("L1") else 2
        return np.linalg.norm(diff, ord=order, axis=-1)

    def _update(self, data: np.ndarray, dt: float) -> None:
        """One Micro Manager adaptivity update on the global data (ids sorted)."""
        n = len(data)
        if self._D_step is None:
            self._D_step = np.zeros((n, n))
            self._active = np.ones(n, dtype=bool)
        dt = dt if dt > 0 else 1.0
        # The distances of the step's current data on those of the last step: every
        # evaluation (a Newton iterate) sees the data the macro side has now.
        self._D = np.exp(-self.history_param * dt) * self._D_step + dt * self._measure(data)
        largest = float(self._D.max())
        ref_tol = self.refining_constant * largest
        coarse_tol = self.coarsening_constant * ref_tol if largest > 0 else np.finfo(float).tiny
        D, active = self._D, self._active
        for i in range(n):  # deactivation, in id order (as the Micro Manager)
            if active[i]:
                others = np.flatnonzero(active)
                others = others[others != i]
                if len(others) and D[i, others].min() < coarse_tol:
                    active[i] = False
        for i in np.flatnonzero(~active):  # activation
            on = np.flatnonzero(active)
            if not len(on) or D[i, on].min() > ref_tol:
                active[i] = True
        on = np.flatnonzero(active)
        nearest = on[np.argmin(D[:, on], axis=1)]
        self._associated = np.where(active, np.arange(n), nearest)
        self._distance_to = D[np.arange(n), self._associated]

    def redirect(self, dispatcher, states, keys, ids):
        """Update the active set; an inactive point takes its associated point's state."""
        comm = dispatcher.comm
        local = (np.asarray(ids, dtype=np.int64), states, keys)
        parts = comm.allgather(local) if comm.size > 1 else [local]
        all_ids = np.concatenate([p[0] for p in parts])
        all_states = np.concatenate([p[1] for p in parts]).reshape(len(all_ids), -1)
        all_keys = np.concatenate([p[2] for p in parts]).reshape(len(all_ids), -1)
        order = np.argsort(all_ids, kind="stable")
        all_ids, all_states, all_keys = all_ids[order], all_states[order], all_keys[order]
        step = dispatcher.clock.step
        if self._ids is None or not np.array_equal(self._ids, all_ids):
            self._D = self._D_step = self._active = None
            self._ids = all_ids
        new_step = self._step != step
        if new_step:  # a new step: the last distances become the history
            self._D_step = self._D
            self._step = step
        if new_step or self.every_evaluation or self._active is None:
            self._update(all_states, dispatcher.clock.dt)
        position = np.searchsorted(all_ids, ids)
        source = self._associated[position]
        self._point_active = self._active[position]
        self._point_distance = self._distance_to[position]
        return all_states[source], all_keys[source]

    def resolve(self, dispatcher, keys, states, ids):
        """Solve every missing (active) state."""
        self.statistics.evaluations += 1
        self._fields = {}
        self._step_now = dispatcher.clock.step
        g_keys, g_states, g_ids = self._gather_missing(dispatcher, keys, states, ids)
        if len(g_keys):
            self._solve(dispatcher, g_keys, g_states, g_ids)
        return {}

    def point_fields(self, key_bytes, inverse):
        """Active flags of the points; the estimate is the distance to the associated point."""
        fields = super().point_fields(key_bytes, inverse)
        active = np.asarray(self._point_active, dtype=np.float64)
        fields[ACTIVE_KEY] = active
        fields[ESTIMATE_KEY] = np.where(active > 0, 0.0, self._point_distance)
        fields[SECONDS_KEY] = np.where(active > 0, fields[SECONDS_KEY], 0.0)
        return fields
