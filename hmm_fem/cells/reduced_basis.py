"""A certified reduced basis for linear periodic cells with isotropic phases.

For isotropic phases the constrained cell matrix and the loads of
:class:`~hmm_fem.cells.ConductivityCell` and :class:`~hmm_fem.cells.ElasticityCell`
(periodic condition) are affine in ``Q`` positive coefficients ``theta_q``::

    A(theta) = D + sum_q theta_q A_q,      b_j(theta) = sum_q theta_q b_qj,

* conductivity: one term per phase ``p``, ``theta = k_p``,
  ``A_p = int_{Y_p} grad u . grad v``;
* elasticity: two terms per phase, ``theta = (kappa_p, 2 mu_p)`` with
  ``kappa = lambda + 2 mu / d`` (``d`` normal strain components: 2 in plane strain,
  3 in 3D) and the Voigt matrices ``m m^T`` and ``P = diag(1, .., 1/2, ..) - m m^T / d``
  (``C = kappa m m^T + 2 mu P``). Unlike ``(lambda, mu)``, both coefficients are
  positive for every admissible ``(E, nu)`` and both ``A_q`` are positive
  semidefinite, which the coercivity bound below needs.

``A_q`` and ``b_qj`` are assembled once, with the cell's own compiled forms and periodic
constraint (dolfinx_mpc, the pinned node; ``D`` is one on the constrained diagonal, and
the constrained rows and columns of ``A_q`` are zero): the reduced system of the full
cell at any ``theta``.

**Offline** (:meth:`ReducedBasis.train`): a greedy selection over a training set of
phase values (log-uniform in the moduli, uniform in ``nu``; a Halton set and the
corners of the box). Each step solves the full cell at the parameter with the largest
*error bound* and adds its ``d`` correctors, orthonormalised (Gram-Schmidt, twice) in the
energy inner product ``X_0`` of the first reference parameter. The Riesz representers
of the residual terms (``X_m^-1 b_qj`` and ``X_m^-1 A_q z_n``) give Gram matrices, so that
the dual norm of the residual costs ``O((Q (d + N))^2)`` online, independent of the
number of cell dofs.

**Online** (:meth:`ReducedBasis.evaluate`): the ``N x N`` Galerkin system
``sum_q theta_q Z^T A_q Z c_j = sum_q theta_q Z^T b_qj``, the tensor
``T_N |Y| = sum_q theta_q <e_i . S_q e_j>_Y - b_i^T Z c_j`` (the energy average of the
skeleton) and the bound.

**The bound.** Let ``e_j = x_j - Z c_j`` be the error of load case ``j`` in the full
(truth) space and ``r_j = b_j - A Z c_j`` its residual. Galerkin orthogonality
(``Z^T r_j = 0``) gives ``b_i^T x_j - b_i^T Z c_j = e_i^T A e_j``, so::

    E := T_N - T = [a(e_i, e_j)] / |Y|    is symmetric positive semidefinite

(the reduced tensor is an upper bound: the correctors minimise the energy). For any
unit vector ``w``, ``e_w = sum_j w_j e_j`` solves ``A e_w = r_w`` and
``a(e_w, e_w) = r_w^T A^-1 r_w``. With a reference inner product
``X_m = D + sum_q thetabar_mq A_q`` and ``alpha = min_q theta_q / thetabar_mq``,
``v^T A v >= alpha v^T X_m v`` on the unconstrained vectors (each ``A_q`` is positive
semidefinite and ``theta_q >= alpha thetabar_mq``), hence ``A^-1 <= X_m^-1 / alpha`` and::

    0 <= E <= B := R / (alpha |Y|),     R_ij = r_i^T X_m^-1 r_j   (Loewner order),

the dual norm of the residual squared over the coercivity lower bound. So
``||T_N - T||_2 <= lambda_max(B)`` and ``|T_N - T|_ij <= sqrt(B_ii B_jj)``. Likewise
``A <= beta X_m`` with ``beta = max_q theta_q / thetabar_mq`` gives ``B <= (beta / alpha) E``:
the effectivity ``lambda_max(B) / ||E||_2`` lies in ``[1, beta / alpha]``.
``log(beta / alpha)`` is Hilbert's projective distance between ``theta`` and
``thetabar_m``, so several references are chosen (farthest-point sampling of the training
set in that distance, until every training point is within ``effectivity_target``) and
each evaluation uses the nearest. The relative bound is
``lambda_max(B) / (lambda_max(T_N) - lambda_max(B))`` (``lambda_max(T) >= lambda_max(T_N) -
lambda_max(B)`` by Weyl). ``R`` is a quadratic form in the Gram matrix of the residual
terms, which cancels to round-off near convergence: ``gamma (|W|^T |G| |W|)`` (Frobenius norm,
``gamma = 64 (T + 1) eps``, ``T`` the number of terms) is added to ``R`` as a floating-point
safeguard, so the bound does not drop below the rounding of its own evaluation.

The bound is certified with respect to the full finite element solution on the same mesh
(not the continuum: the discretisation error is another matter).

**The Stokes cell** (:class:`~hmm_fem.cells.PermeabilityCell`) is affine in a stretch of
the cell, ``x = diag(s) xhat`` (a rectangular or box cell with the inclusions stretched
alike), not in the viscosity (``k`` is simply proportional to ``1/mu``). With the
contravariant Piola map of the velocity the divergence constraint does not depend on
``s``, and on the discretely divergence-free space the viscous form is affine with
positive coefficients and semidefinite terms: the same greedy, online stage and rigorous
bound apply, with the divergence blocks in ``D`` (see :class:`_Stokes`). The reduced
permeability is a *lower* bound there: ``0 <= k - k_N <= B``. Parameters:
``{"stretch": (s_x, s_y)}``; training ranges ``{"stretch": {"sx": (lo, hi), "sy": ...}}``.

**Growing after training.** :meth:`ReducedBasis.train` keeps the basis vectors and the
Gram pieces (``n x N`` floats, not the factorisations). :meth:`ReducedBasis.attach`
rebuilds the truth operators on the cell, :meth:`ReducedBasis.truth_correctors` solves the
full cell at a parameter and :meth:`ReducedBasis.enrich` adds such snapshots as the greedy
does (used by :class:`~hmm_fem.micro.ReducedBasisSurrogate` to learn from its fallbacks).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import dolfinx_mpc
import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from ..materials.phases import as_conductivity, as_young_poisson
from .conductivity import ConductivityCell
from .elasticity import ElasticityCell
from .solver import DEFAULT_SOLVER_OPTIONS, FactorisedSolver

__all__ = [
    "ReducedBasis",
    "ReducedEvaluation",
    "OutsideTrainingRangeWarning",
    "FORMAT_VERSION",
]

#: Version of the ``.npz`` layout written by :meth:`ReducedBasis.save`.
FORMAT_VERSION = 1

_EPS = np.finfo(np.float64).eps


class OutsideTrainingRangeWarning(RuntimeWarning):
    """A reduced-basis evaluation at phase values outside the training range.

    The bound stays rigorous there, but may be large: retrain on a wider range.
    """


@dataclass
class ReducedEvaluation:
    """The result of one reduced-basis evaluation.

    Attributes:
        tensor: The reduced effective tensor ``T_N`` (K* or the Voigt C*), symmetric.
        bound: ``B``, with ``0 <= T_N - T <= B`` in the Loewner order (``T`` the full
            finite element tensor).
        error_bound: ``lambda_max(B)``, a bound on ``||T_N - T||_2``.
        relative_error_bound: A bound on ``||T_N - T||_2 / ||T||_2`` (``inf`` if the
            bound exceeds the tensor).
        entry_bounds: ``sqrt(B_ii B_jj)``, bounds on ``|T_N - T|_ij``.
        reference: The index of the reference inner product used.
        effectivity_bound: ``beta / alpha``, the largest possible effectivity.
        arithmetic_mean: ``<C> = sum_p |Y_p| C_p / |Y|``, the Voigt (Wiener) upper bound of
            the tensor. The energy formula ``<C> - b_i . x_j / |Y|`` cancels down from it, so
            full solves carry a round-off of about ``1e-14 max|<C>|`` (not covered by the
            bound, which is on the exact finite element tensor).
        rounding_bound: The part of ``error_bound`` that is the floating-point safeguard
            (the floor of the bound near convergence; effectivities are only meaningful for
            errors well above it).
        inside: Whether the phase values lie inside the training range.
    """

    tensor: np.ndarray
    bound: np.ndarray
    error_bound: float
    relative_error_bound: float
    entry_bounds: np.ndarray
    reference: int
    effectivity_bound: float
    arithmetic_mean: np.ndarray
    rounding_bound: float
    inside: bool


# -- the affine parametrisations ---------------------------------------------------------------
class _Conductivity:
    """Isotropic conductivities: one coefficient per phase, ``theta_p = k_p``."""

    kind = "conductivity"
    names = ("k",)
    log = np.array([True])
    sign = 1.0  # T = sign (<C> - b . x) / |Y|
    homogeneous = True  # the tensor is homogeneous of degree one in the parameters

    def __init__(self, dim: int):
        d = int(dim)
        self.dim = d
        self.terms = [np.eye(d)]
        self.num_loads = d

    @staticmethod
    def load_constant(problem):
        """The constant of the macro load in the cell's forms."""
        return problem.macro_gradient

    def parse(self, value, what: str) -> np.ndarray:
        K = as_conductivity(value, self.dim, what)
        if not np.array_equal(K, K[0, 0] * np.eye(self.dim)):
            raise ValueError(
                f"{what} is anisotropic; the reduced basis covers isotropic phases only "
                "(give one positive scalar per phase)"
            )
        return np.array([K[0, 0]])

    def coefficients(self, params: np.ndarray) -> np.ndarray:
        """``theta`` (``(..., P)``) of the parameters ``(..., P, 1)``."""
        return params[..., 0].copy()


class _Elasticity:
    """Isotropic ``(E, nu)`` phases: ``theta_p = (kappa_p, 2 mu_p)``, ``kappa = lambda + 2mu/d``."""

    kind = "elasticity"
    names = ("E", "nu")
    log = np.array([True, False])
    sign = 1.0
    homogeneous = True

    def __init__(self, dim: int):
        d = int(dim)
        n = 3 if d == 2 else 6
        self.dim = d
        m = np.zeros(n)
        m[:d] = 1.0
        P = np.diag(np.where(m > 0, 1.0, 0.5)) - np.outer(m, m) / d
        self.terms = [np.outer(m, m), P]
        self.num_loads = n

    @staticmethod
    def load_constant(problem):
        """The constant of the macro load in the cell's forms."""
        return problem.macro_strain

    def parse(self, value, what: str) -> np.ndarray:
        return np.array(as_young_poisson(value, what))  # isotropic phases only

    def coefficients(self, params: np.ndarray) -> np.ndarray:
        """``theta`` (``(..., 2P)``: ``kappa, 2 mu`` per phase) of ``(..., P, 2)`` ``(E, nu)``."""
        E, nu = params[..., 0], params[..., 1]
        mu = E / (2.0 * (1.0 + nu))
        lam = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
        theta = np.stack([lam + 2.0 * mu / self.dim, 2.0 * mu], axis=-1)
        return theta.reshape(*theta.shape[:-2], -1)


def _phase_kind_defaults(cls):
    """Members shared by the phase kinds (loads carry the matrix coefficients)."""

    def load_coefficients(self, theta: np.ndarray) -> np.ndarray:
        return theta

    def output_scale(self, params: np.ndarray) -> np.ndarray | None:
        return None

    def phases(self, cell) -> dict:
        return dict(cell.phases)

    cls.load_coefficients = load_coefficients
    cls.output_scale = output_scale
    cls.phases = phases
    return cls


_phase_kind_defaults(_Conductivity)
_phase_kind_defaults(_Elasticity)


class _Stokes:
    """The periodic Stokes cell stretched by ``s = (s_1, .., s_d)``: ``x = diag(s) xhat``.

    The velocity is mapped by the contravariant Piola map ``u = diag(s) uhat / det``
    (``det = prod s``), which keeps no slip and periodicity and maps the divergence to
    ``div u = divhat uhat / det``: the discretely divergence-free space ``V_0`` of the
    reference cell does not depend on ``s``. On it the viscous form is affine with
    positive coefficients and positive semidefinite terms::

        int grad u : grad v dx = sum_kl theta_kl int d_l uhat_k d_l vhat_k dxhat,
        theta_kl = s_k^2 / (s_l^2 det),

    and the load ``e_j`` becomes ``s_j int vhat_j dxhat``. With ``xhat_j = x_j / s_j`` the
    loads are those of the reference cell, ``That_ij = bhat_i . xhat_j / |Yhat|`` and the
    permeability is ``k = diag(s) That diag(s) / det``. The saddle-point operator
    ``[[A(theta), B^T], [B, 0]]`` is ``D + sum theta_kl A_kl`` with the divergence blocks
    in ``D``: solving with it gives the Riesz representers in ``V_0``, where the
    coercivity argument of the module docstring holds unchanged (``A`` is only
    semidefinite on the whole space, but positive on ``V_0``). The reduced basis
    underestimates: ``0 <= k - k_N <= diag(s) B diag(s) / det``.
    """

    kind = "stokes"
    sign = -1.0  # T = b . x / |Y|: a compliance; the reduced tensor is a lower bound
    homogeneous = False

    def __init__(self, dim: int):
        d = int(dim)
        self.dim = d
        self.names = tuple(f"s{'xyz'[k]}" for k in range(d))
        self.log = np.ones(d, dtype=bool)
        self.num_loads = d
        self.terms = [(k, l) for k in range(d) for l in range(d)]  # noqa: E741

    @staticmethod
    def load_constant(problem):
        return problem.force

    def phases(self, cell) -> dict:
        return {"stretch": 0}

    def parse(self, value, what: str) -> np.ndarray:
        s = np.asarray(value, dtype=np.float64).reshape(-1)
        if s.shape != (self.dim,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(
                f"{what} is {value!r}; give {self.dim} positive stretch factors "
                f"({', '.join(self.names)}), the cell's side lengths over the reference cell's"
            )
        return s

    def coefficients(self, params: np.ndarray) -> np.ndarray:
        """``theta_kl = s_k^2 / (s_l^2 det)`` (``(..., d^2)``) of ``(..., 1, d)`` stretches."""
        s = params[..., 0, :]
        det = np.prod(s, axis=-1)
        theta = s[..., :, None] ** 2 / (s[..., None, :] ** 2 * det[..., None, None])
        return theta.reshape(*theta.shape[:-2], -1)

    def load_coefficients(self, theta: np.ndarray) -> np.ndarray:
        return np.ones((*theta.shape[:-1], 1))

    def output_scale(self, params: np.ndarray) -> np.ndarray:
        """``s / sqrt(det)``: ``k = diag(sigma) That diag(sigma)``."""
        s = np.asarray(params)[..., 0, :]
        return s / np.sqrt(np.prod(s, axis=-1))[..., None]


def _parametrisation(problem):
    from .stokes import PermeabilityCell

    if isinstance(problem, ConductivityCell):
        kind = _Conductivity(problem.cell.dim)
    elif isinstance(problem, ElasticityCell):
        kind = _Elasticity(problem.cell.dim)
    elif isinstance(problem, PermeabilityCell):
        kind = _Stokes(problem.cell.dim)
    else:
        raise TypeError(
            f"ReducedBasis takes a ConductivityCell, an ElasticityCell or a PermeabilityCell, "
            f"got {type(problem).__name__}"
        )
    if problem.condition.name != "periodic":
        raise ValueError(
            "ReducedBasis needs the periodic condition (the cell has "
            f"bc='{problem.condition.name}'); build the cell with bc='periodic'"
        )
    return kind


def _fingerprint(problem, kind) -> dict:
    """What identifies the cell: kind, degree, dofs, phases and a hash of mesh and tags."""
    cell = problem.cell
    msh = cell.mesh
    tdim = msh.topology.dim
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(msh.geometry.x).tobytes())
    digest.update(np.ascontiguousarray(msh.topology.connectivity(tdim, 0).array).tobytes())
    digest.update(np.ascontiguousarray(cell.cell_tags.indices).tobytes())
    digest.update(np.ascontiguousarray(cell.cell_tags.values).tobytes())
    return {
        "kind": kind.kind,
        "dim": int(cell.dim),
        "degree": int(problem.degree),
        "dofs": int(problem.system.load.getSize()),
        "phases": {str(k): int(v) for k, v in kind.phases(cell).items()},
        "mesh_hash": digest.hexdigest(),
    }


def _csr(A: PETSc.Mat):
    import scipy.sparse

    indptr, indices, values = A.getValuesCSR()
    return scipy.sparse.csr_matrix(
        (values.copy(), indices.copy(), indptr.copy()), shape=A.getSize()
    )


def _hilbert(log_theta: np.ndarray, log_refs: np.ndarray) -> np.ndarray:
    """Hilbert's projective distance ``max_q - min_q`` of ``log theta - log thetabar``."""
    diff = log_theta[..., None, :] - log_refs
    return diff.max(axis=-1) - diff.min(axis=-1)


class ReducedBasis:
    """A certified reduced basis of a periodic conductivity, elasticity or (stretched) Stokes cell.

    Built by :meth:`train` (or :meth:`load`); see the module docstring for the method and
    the derivation of the bound.

    Example:
        >>> problem = cells.ConductivityCell(cells.square(0.4), {"matrix": 1, "inclusion": 10})
        >>> rb = ReducedBasis.train(problem, {"matrix": 1.0, "inclusion": (1.0, 1000.0)})
        >>> result = rb.evaluate({"matrix": 1.0, "inclusion": 250.0})
        >>> result.tensor, result.relative_error_bound
        >>> rb.save("square.npz"); rb = ReducedBasis.load("square.npz", problem)

    Attributes:
        kind: ``"conductivity"``, ``"elasticity"`` or ``"stokes"``.
        fingerprint: What identifies the cell (kind, degree, dofs, phases, mesh hash).
        size: ``N``, the number of basis functions.
        references: The reference coefficients ``thetabar`` (``(M, Q)``).
        lower: The lower corner of the training box, ``(P, n)`` (per phase: ``k``, or ``E``
            and ``nu``).
        upper: The upper corner of the training box.
        history: Per greedy step ``(size, largest relative bound on the training set)``.
        converged: Whether the greedy reached the tolerance.
        outside_count: Evaluations outside the training range so far.
        offline_seconds: Wall time of the training.
    """

    def __init__(self, kind, fingerprint, phases, volume, lower, upper, data, outside="warn"):
        if outside not in ("warn", "raise"):
            raise ValueError(f"outside={outside!r} must be 'warn' or 'raise'")
        self._kind = kind
        self.kind = kind.kind
        self.fingerprint = fingerprint
        self.phases = dict(phases)
        self.volume = float(volume)
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        self.outside = outside
        self.outside_count = 0
        self.history: list[tuple[int, float]] = []
        self.converged = False
        self.offline_seconds = 0.0
        self.tolerance = float("nan")
        self.enrichments = 0
        self._growth = None
        self._trainer = None
        self._petsc_options = None
        self._set_online(data)

    # -- the online data ---------------------------------------------------------------------
    def _set_online(self, data: dict) -> None:
        self._AN = np.asarray(data["AN"])  # (Q, N, N)
        self._FN = np.asarray(data["FN"])  # (Q, d, N)
        self._avg = np.asarray(data["avg"])  # (Q, d, d)
        self._G = np.asarray(data["G"])  # (M, T, T)
        self._absG = np.abs(self._G)
        self.references = np.asarray(data["references"])  # (M, Q)
        self._log_refs = np.log(self.references)
        self.size = int(self._AN.shape[1])
        terms = self._G.shape[1]
        self._gamma = 64.0 * (terms + 1) * _EPS

    def _online(self) -> dict:
        return {
            "AN": self._AN,
            "FN": self._FN,
            "avg": self._avg,
            "G": self._G,
            "references": self.references,
        }

    # -- inputs ------------------------------------------------------------------------------
    def parameters(self, values: Mapping) -> np.ndarray:
        """The validated parameters ``(P, n)`` of phase values given by name or tag.

        Raises:
            ValueError: for an unknown or missing phase, a non-positive conductivity or
                modulus, an inadmissible Poisson ratio or an anisotropic phase.
        """
        tag_to_name = {tag: name for name, tag in self.phases.items()}
        given = {}
        for key, value in dict(values).items():
            name = key if isinstance(key, str) else tag_to_name.get(key, key)
            if name not in self.phases:
                raise ValueError(
                    f"{self.kind} given for unknown phase {key!r}; the phases of this cell are "
                    f"{self.phases} (name: tag)"
                )
            given[name] = value
        missing = [f"'{n}'" for n in self.phases if n not in given]
        if missing:
            raise ValueError(f"no {self.kind} given for phase {', '.join(missing)}")
        return np.array(
            [
                self._kind.parse(given[name], f"{self.kind} of phase '{name}' (tag {tag})")
                for name, tag in self.phases.items()
            ]
        )

    def inside(self, params: np.ndarray) -> np.ndarray:
        """Whether parameters ``(..., P, n)`` lie in the training range.

        The cell tensor is homogeneous of degree one in the moduli, so the moduli may be
        scaled together: ``params`` is inside if some common factor brings every modulus
        into its range (and every ``nu`` is inside its own).
        """
        params = np.asarray(params, dtype=np.float64)
        tol = 1e-12
        if not self._kind.homogeneous:
            scale = 1.0 + tol
            return np.all((params >= self.lower / scale) & (params <= self.upper * scale), (-2, -1))
        log = self._kind.log
        x = np.log(params[..., log])
        lo, hi = np.log(self.lower[:, log]), np.log(self.upper[:, log])
        shift_lo = (lo - x).reshape(*x.shape[:-2], -1).max(axis=-1)
        shift_hi = (hi - x).reshape(*x.shape[:-2], -1).min(axis=-1)
        ok = shift_lo <= shift_hi + tol
        if np.any(~log):
            y = params[..., ~log]
            ok &= np.all(
                (y >= self.lower[:, ~log] - tol) & (y <= self.upper[:, ~log] + tol), axis=(-2, -1)
            )
        return ok

    # -- online ------------------------------------------------------------------------------
    def evaluate(self, values: Mapping) -> ReducedEvaluation:
        """The reduced tensor and its certified bound at the given phase values.

        Args:
            values: Per phase (by name or tag) a positive conductivity, or ``(E, nu)``.

        Raises:
            ValueError: for bad values (see :meth:`parameters`), or outside the training
                range when the basis was built with ``outside="raise"``.

        Warns:
            OutsideTrainingRangeWarning: outside the training range (default).
        """
        params = self.parameters(values)
        inside = bool(self.inside(params))
        if not inside:
            self._outside(params)
        out = self._evaluate_coefficients(
            self._kind.coefficients(params)[None], self._kind.output_scale(params[None])
        )
        return ReducedEvaluation(
            tensor=out["tensor"][0],
            bound=out["bound"][0],
            error_bound=float(out["error_bound"][0]),
            relative_error_bound=float(out["relative_error_bound"][0]),
            entry_bounds=out["entry_bounds"][0],
            reference=int(out["reference"][0]),
            effectivity_bound=float(out["effectivity_bound"][0]),
            arithmetic_mean=out["arithmetic_mean"][0],
            rounding_bound=float(out["rounding_bound"][0]),
            inside=inside,
        )

    def effective_tensor(self, values: Mapping) -> np.ndarray:
        """The reduced effective tensor at the given phase values (see :meth:`evaluate`)."""
        return self.evaluate(values).tensor

    def evaluate_many(self, params: np.ndarray) -> dict:
        """Vectorised evaluation of parameters ``(S, P, n)`` in phase order.

        ``n`` is 1 (``k``) for conductivity and 2 (``E, nu``) for elasticity. Returns a dict
        of arrays with the fields of :class:`ReducedEvaluation` (``tensor`` ``(S, d, d)``,
        ...).

        Raises:
            ValueError: for a wrong shape or non-positive or inadmissible values.
        """
        params = np.asarray(params, dtype=np.float64)
        shape = (len(self.phases), len(self._kind.names))
        if params.ndim != 3 or params.shape[1:] != shape:
            raise ValueError(
                f"params has shape {params.shape}; give (S, {shape[0]}, {shape[1]}) "
                f"({', '.join(self._kind.names)} per phase, phases in the order "
                f"{list(self.phases)})"
            )
        good = np.isfinite(params).all(axis=2) & (params[:, :, 0] > 0)
        if self.kind == "elasticity":
            good &= (params[:, :, 1] > -1.0) & (params[:, :, 1] < 0.5)
        elif self.kind == "stokes":
            good &= np.all(params > 0, axis=2)
        if not np.all(good):
            # The scalar check names the first bad value and what is wrong with it.
            s, p = np.argwhere(~good)[0]
            name = list(self.phases)[p]
            value = params[s, p] if shape[1] > 1 else params[s, p, 0]
            self._kind.parse(value, f"{self.kind} of sample {s}, phase '{name}'")
        inside = self.inside(params)
        if not np.all(inside):
            self._outside(params[~inside][0], count=int(np.sum(~inside)))
        out = self._evaluate_coefficients(
            self._kind.coefficients(params), self._kind.output_scale(params)
        )
        out["inside"] = inside
        return out

    def _outside(self, params: np.ndarray, count: int = 1) -> None:
        self.outside_count += count
        text = (
            f"{self.kind} {params.tolist()} ({', '.join(self._kind.names)} per phase "
            f"{list(self.phases)}) lies outside the training range [{self.lower.tolist()}, "
            f"{self.upper.tolist()}] (moduli up to a common factor) of the reduced basis"
        )
        if self.outside == "raise":
            raise ValueError(text + "; retrain on a wider range")
        warnings.warn(
            text + "; the bound is still rigorous but may be large: retrain on a wider range",
            OutsideTrainingRangeWarning,
            stacklevel=3,
        )

    def _evaluate_coefficients(self, theta: np.ndarray, scale: np.ndarray | None = None) -> dict:
        """The online stage at coefficients ``theta`` (``(S, Q)``), vectorised over ``S``.

        ``scale`` (``(S, d)``, the Stokes stretch): the tensor and bound are
        ``diag(scale) T diag(scale)`` (a congruence: the Loewner order is kept).
        """
        S, Q = theta.shape
        N, d = self.size, self._FN.shape[1]
        L = self._FN.shape[0]
        phi = self._kind.load_coefficients(theta)  # (S, L)
        A = np.einsum("sq,qmn->smn", theta, self._AN)
        F = np.einsum("sl,ljn->sjn", phi, self._FN)
        C = np.linalg.solve(A, F.transpose(0, 2, 1))  # (S, N, d)
        avg = np.einsum("sq,qij->sij", theta, self._avg)
        T = self._kind.sign * (avg - F @ C) / self.volume
        T = 0.5 * (T + T.transpose(0, 2, 1))
        # The residual coefficients of the terms [b_lj (L d), A_q z_n (Q N)].
        W = np.empty((S, L * d + Q * N, d))
        eye = np.eye(d)
        W[:, : L * d, :] = (phi[:, :, None, None] * eye).reshape(S, L * d, d)
        W[:, L * d :, :] = -(theta[:, :, None, None] * C[:, None, :, :]).reshape(S, Q * N, d)
        log_theta = np.log(theta)
        distance = _hilbert(log_theta, self._log_refs)  # (S, M)
        ref = np.argmin(distance, axis=1)
        ratio = theta[:, None, :] / self.references[None]  # (S, M, Q)
        alpha = ratio.min(axis=2)[np.arange(S), ref]
        R = np.empty((S, d, d))
        safeguard = np.empty(S)
        for m in np.unique(ref):
            sel = ref == m
            Wm = W[sel]
            R[sel] = Wm.transpose(0, 2, 1) @ (self._G[m] @ Wm)
            absW = np.abs(Wm)
            rounding = absW.transpose(0, 2, 1) @ (self._absG[m] @ absW)
            safeguard[sel] = self._gamma * np.linalg.norm(rounding, axis=(1, 2))
        R = 0.5 * (R + R.transpose(0, 2, 1)) + safeguard[:, None, None] * np.eye(d)
        B = R / (alpha[:, None, None] * self.volume)
        rounding = safeguard / (alpha * self.volume)
        if scale is not None:
            T = scale[:, :, None] * T * scale[:, None, :]
            B = scale[:, :, None] * B * scale[:, None, :]
            avg = scale[:, :, None] * avg * scale[:, None, :]
            rounding = rounding * (scale**2).max(axis=1)
        top_B = np.linalg.eigvalsh(B)[:, -1].clip(min=0.0)
        top_T = np.linalg.eigvalsh(T)[:, -1]
        # T_N >= T (energy minimum): lambda_max(T) >= lambda_max(T_N) - lambda_max(B);
        # T_N <= T (compliance, Stokes): lambda_max(T) >= lambda_max(T_N).
        denominator = top_T - top_B if self._kind.sign > 0 else top_T
        with np.errstate(divide="ignore"):
            relative = np.where(
                denominator > 0, top_B / np.where(denominator > 0, denominator, 1.0), np.inf
            )
        diag = np.sqrt(np.clip(np.einsum("sii->si", B), 0.0, None))
        return {
            "tensor": T,
            "bound": B,
            "error_bound": top_B,
            "relative_error_bound": relative,
            "entry_bounds": diag[:, :, None] * diag[:, None, :],
            "reference": ref,
            "effectivity_bound": np.exp(distance[np.arange(S), ref]),
            "arithmetic_mean": avg / self.volume,
            "rounding_bound": rounding,
        }

    # -- offline -----------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        problem,
        ranges: Mapping,
        *,
        tolerance: float = 1e-7,
        training_size: int = 200,
        max_size: int | None = None,
        effectivity_target: float = 4.0,
        max_references: int = 8,
        seed: int = 0,
        outside: str = "warn",
        petsc_options: dict | None = None,
        verbose: bool = False,
    ) -> ReducedBasis:
        """Greedy training of a reduced basis of ``problem``.

        Args:
            problem: A :class:`~hmm_fem.cells.ConductivityCell` or
                :class:`~hmm_fem.cells.ElasticityCell` with the periodic condition (its
                current phase values do not matter; they are left unchanged), or a
                :class:`~hmm_fem.cells.PermeabilityCell` (the reference cell of a stretch).
            ranges: Per phase (name or tag) the training range. Conductivity: ``(lo, hi)``
                or a fixed value. Elasticity: ``{"E": (lo, hi), "nu": (lo, hi)}`` (either a
                range or a fixed value). Moduli are sampled log-uniformly, ``nu``
                uniformly; as the tensor is homogeneous of degree one in the moduli, a
                fixed matrix modulus with the inclusion's in ``(1, 1000)`` covers every
                contrast from 1 to 1000 at any scale. Stokes:
                ``{"stretch": {"sx": (lo, hi), "sy": (lo, hi)}}`` (log-uniform).
            tolerance: Stop when the relative error bound is below this on the whole
                training set.
            training_size: Number of Halton points of the training set (the corners of
                the box are added).
            max_size: The largest number of basis functions (default ``d * 40``); the
                greedy stops there with :attr:`converged` ``False`` and a warning.
            effectivity_target: Reference inner products are added until every training
                point is within this effectivity bound (``beta / alpha``) of one.
            max_references: The largest number of reference inner products.
            seed: Seed of the scrambled Halton sequence.
            outside: What an evaluation outside the range does: ``"warn"`` or ``"raise"``.
            petsc_options: Options of the truth and reference factorisations (default
                CHOLMOD Cholesky, :data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`).
            verbose: Print one line per greedy step.

        Raises:
            ValueError: for bad ranges (non-positive moduli, ``lo > hi``, unknown phases)
                or ``tolerance`` not positive.
        """
        if not tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        if not effectivity_target > 1:
            raise ValueError(f"effectivity_target must exceed 1, got {effectivity_target}")
        start = time.perf_counter()
        kind = _parametrisation(problem)
        cell = problem.cell
        phases = kind.phases(cell)
        lower, upper = _ranges(kind, phases, ranges)
        rb = cls.__new__(cls)
        rb._kind, rb.kind, rb.phases = kind, kind.kind, phases
        rb.lower, rb.upper, rb.outside = lower, upper, outside
        rb.volume = cell.volume
        rb.fingerprint = _fingerprint(problem, kind)
        rb.enrichments, rb._trainer, rb._petsc_options = 0, None, petsc_options
        trainer = _Trainer(problem, kind, petsc_options)
        try:
            training = _training_set(kind, lower, upper, training_size, seed)
            theta_train = kind.coefficients(training)
            references = _references(np.log(theta_train), effectivity_target, max_references)
            data = trainer.run(
                rb,
                theta_train,
                theta_train[references],
                tolerance,
                max_size if max_size is not None else 40 * kind.num_loads,
                verbose,
                kind.output_scale(training),
            )
            rb._growth = trainer.growth()  # to grow the basis later (enrich)
        finally:
            trainer.destroy()
        rb.outside_count = 0
        rb.tolerance = float(tolerance)
        rb.training = training
        rb._set_online(data)
        rb.offline_seconds = time.perf_counter() - start
        return rb

    # -- enrichment after training ----------------------------------------------------------
    @property
    def can_enrich(self) -> bool:
        """Whether the basis vectors are kept, so that :meth:`enrich` can grow the basis."""
        return self._trainer is not None or self._growth is not None

    @property
    def attached(self) -> bool:
        """Whether the truth-space operators are built (:meth:`attach`)."""
        return self._trainer is not None

    def check_cell(self, problem) -> None:
        """Raise if ``problem`` is not the cell this basis was trained on.

        Raises:
            ValueError: naming what differs (kind, degree, dof count, phase tags, mesh).
        """
        mine = _fingerprint(problem, _parametrisation(problem))
        theirs = self.fingerprint
        differ = [k for k in mine if mine[k] != theirs.get(k)]
        if differ:
            detail = "; ".join(f"{k}: basis {theirs.get(k)!r}, cell {mine[k]!r}" for k in differ)
            raise ValueError(
                f"the reduced basis belongs to a different cell ({detail}); train a reduced "
                "basis for this cell (ReducedBasis.train) or use it with its own cell"
            )

    def attach(self, problem) -> None:
        """Rebuild the truth-space operators on the cell of ``problem`` (once).

        Assembles the affine terms with the cell's forms and factorises the reference inner
        products, so that :meth:`truth_correctors` and :meth:`enrich` work. Costs about
        ``M + 1`` factorisations; :meth:`detach` frees them.

        Raises:
            ValueError: if the basis vectors were not kept (a file saved with
                ``basis=False``) or ``problem`` is another cell.
        """
        if self._trainer is not None:
            return
        if self._growth is None:
            raise ValueError(
                "this reduced basis has no basis vectors (saved with basis=False): it cannot "
                "grow; retrain it, or save it with basis=True"
            )
        self.check_cell(problem)
        trainer = _Trainer(problem, _parametrisation(problem), self._petsc_options)
        try:
            trainer.start(self.references, self._growth)
        except BaseException:
            trainer.destroy()
            raise
        self._trainer, self._growth = trainer, None

    def detach(self) -> None:
        """Free the truth-space operators of :meth:`attach` (the basis can be attached again)."""
        if self._trainer is not None:
            self._growth = self._trainer.growth()
            self._trainer.destroy()
            self._trainer = None

    def truth_correctors(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The full cell's correctors ``(n, d)`` and tensor at parameters ``(P, n)``.

        The snapshot that :meth:`enrich` takes (the basis must be :meth:`attach`-ed).
        """
        if self._trainer is None:
            raise RuntimeError("attach(problem) the reduced basis before a truth solve")
        theta = self._kind.coefficients(np.asarray(params, dtype=np.float64)[None])[0]
        return self._trainer.truth_solve(theta)

    def enrich(self, snapshots, params: np.ndarray | None = None) -> int:
        """Add corrector snapshots (``(n, d)`` each, from :meth:`truth_correctors`).

        Every snapshot is orthonormalised against the basis as in the greedy; its Riesz
        representers extend the Gram matrices, so the bound stays rigorous. The training
        box is widened to contain ``params`` (``(S, P, n)``, the snapshots' parameters) if
        given. The same snapshots in the same order give bitwise the same basis.

        Returns:
            The number of basis functions added.
        """
        if self._trainer is None:
            raise RuntimeError("attach(problem) the reduced basis before enriching it")
        added = 0
        for X in snapshots:
            added += self._trainer.extend(np.asarray(X, dtype=np.float64))
        if added:
            self._set_online(self._trainer.online())
        self.enrichments += len(snapshots)
        if params is not None and len(params):
            params = np.asarray(params, dtype=np.float64)
            self.lower = np.minimum(self.lower, params.min(axis=0))
            self.upper = np.maximum(self.upper, params.max(axis=0))
        return added

    # -- files -------------------------------------------------------------------------------
    def to_arrays(self, basis: bool = True) -> dict:
        """The basis as named arrays (what :meth:`save` writes; :meth:`from_arrays` reads).

        Args:
            basis: Include the basis vectors and Gram pieces (``n x N`` floats), so that a
                basis read back can still :meth:`enrich`.
        """
        meta = {
            "format": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "phases": self.phases,
            "volume": self.volume,
            "tolerance": self.tolerance,
            "converged": self.converged,
            "history": self.history,
            "outside": self.outside,
            "enrichments": self.enrichments,
        }
        arrays = {
            "meta": np.array(json.dumps(meta)),
            "lower": self.lower,
            "upper": self.upper,
            **self._online(),
        }
        growth = self._trainer.growth() if self._trainer is not None else self._growth
        if basis and growth is not None:
            arrays.update({f"growth_{k}": v for k, v in growth.items()})
        return arrays

    def save(self, path: str | os.PathLike, basis: bool = True) -> None:
        """Write the online data, the training box and the fingerprint to ``path`` (``.npz``).

        Args:
            path: The file.
            basis: Also write the basis vectors (see :meth:`to_arrays`).
        """
        np.savez(path, **self.to_arrays(basis))

    @classmethod
    def from_arrays(cls, arrays, problem=None, what: str = "the arrays") -> ReducedBasis:
        """A reduced basis from :meth:`to_arrays`; checked against ``problem`` if given.

        Without ``problem`` the cell is not checked here: call :meth:`check_cell` (or
        :meth:`attach`) before trusting it on a cell.

        Raises:
            ValueError: if the arrays are not a reduced basis of this version, or belong to
                another cell than ``problem``'s.
        """
        arrays = dict(arrays)
        if "meta" not in arrays:
            raise ValueError(f"{what} is not a reduced basis (no 'meta')")
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{what} has reduced-basis format {meta.get('format')}, this version "
                f"reads {FORMAT_VERSION}; retrain and save again"
            )
        theirs = meta["fingerprint"]
        kinds = {"conductivity": _Conductivity, "elasticity": _Elasticity, "stokes": _Stokes}
        kind = kinds[theirs["kind"]](theirs["dim"])
        rb = cls(
            kind,
            theirs,
            meta["phases"],
            meta["volume"],
            arrays["lower"],
            arrays["upper"],
            arrays,
            outside=meta["outside"],
        )
        if problem is not None:
            try:
                rb.check_cell(problem)
            except ValueError as exc:
                raise ValueError(f"{what}: {exc}") from None
        rb.tolerance = meta["tolerance"]
        rb.converged = meta["converged"]
        rb.history = [tuple(h) for h in meta["history"]]
        rb.enrichments = int(meta.get("enrichments", 0))
        if "growth_Z" in arrays:
            rb._growth = {k: arrays[f"growth_{k}"] for k in ("Z", "Gbb", "Gba", "Gaa")}
        return rb

    @classmethod
    def load(cls, path: str | os.PathLike, problem=None) -> ReducedBasis:
        """Read a reduced basis written by :meth:`save`, for the cell of ``problem``.

        Args:
            path: The ``.npz`` file.
            problem: The cell problem it is for (checked); ``None``: not checked here
                (see :meth:`from_arrays`).

        Raises:
            ValueError: if the file is not a reduced basis of this version, or belongs to
                another cell (kind, degree, dof count, phase tags or mesh differ).
        """
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        return cls.from_arrays(arrays, problem, what=os.fspath(path))


# -- training ----------------------------------------------------------------------------------
def _ranges(kind, phases: dict, ranges: Mapping) -> tuple[np.ndarray, np.ndarray]:
    tag_to_name = {tag: name for name, tag in phases.items()}
    given = {}
    for key, value in dict(ranges).items():
        name = key if isinstance(key, str) else tag_to_name.get(key, key)
        if name not in phases:
            raise ValueError(f"range given for unknown phase {key!r}; the phases are {phases}")
        given[name] = value
    missing = [n for n in phases if n not in given]
    if missing:
        raise ValueError(f"no training range given for phase(s) {missing}")
    n = len(kind.names)
    lower, upper = np.empty((len(phases), n)), np.empty((len(phases), n))
    for p, name in enumerate(phases):
        value = given[name]
        if n == 1:
            items = [value]
        else:
            if not isinstance(value, Mapping) or set(value) != set(kind.names):
                raise ValueError(
                    f"range of phase '{name}' is {value!r}; give {{'E': (lo, hi), 'nu': (lo, hi)}} "
                    "(a single value fixes it)"
                )
            items = [value[k] for k in kind.names]
        for i, item in enumerate(items):
            pair = np.atleast_1d(np.asarray(item, dtype=np.float64))
            if pair.size == 1:
                pair = np.array([pair[0], pair[0]])
            if pair.shape != (2,) or not np.all(np.isfinite(pair)) or pair[0] > pair[1]:
                raise ValueError(
                    f"range of {kind.names[i]} of phase '{name}' is {item!r}; give (lo, hi) "
                    "with lo <= hi, or one value"
                )
            lower[p, i], upper[p, i] = pair
    # Validate the corners as phase values (positive moduli, admissible nu).
    for p, name in enumerate(phases):
        for row in (lower[p], upper[p]):
            kind.parse(row if n > 1 else row[0], f"training range of phase '{name}'")
    return lower, upper


def _training_set(kind, lower, upper, size: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc

    log = np.broadcast_to(kind.log, lower.shape)
    lo = np.where(log, np.log(lower), lower).ravel()
    hi = np.where(log, np.log(upper), upper).ravel()
    free = np.flatnonzero(hi > lo)
    points = np.tile(lo, (1, 1))
    if free.size:
        unit = qmc.Halton(d=free.size, scramble=True, seed=seed).random(int(size))
        if free.size <= 6:
            corners = np.array(np.meshgrid(*[[0.0, 1.0]] * free.size)).reshape(free.size, -1).T
            unit = np.vstack([corners, unit])
        points = np.tile(lo, (len(unit), 1))
        points[:, free] = lo[free] + unit * (hi[free] - lo[free])
    values = np.where(log.ravel(), np.exp(points), points)
    return values.reshape(len(points), *lower.shape)


def _references(log_theta: np.ndarray, target: float, max_count: int) -> list[int]:
    """Farthest-point sampling in Hilbert's distance, from the most central point."""
    limit = np.log(target)
    sample = log_theta[:: max(1, len(log_theta) // 400)]
    centre = int(np.argmin(_hilbert(sample, sample).max(axis=1))) * max(1, len(log_theta) // 400)
    chosen = [centre]
    nearest = _hilbert(log_theta, log_theta[[centre]])[:, 0]
    while nearest.max() > limit and len(chosen) < max_count:
        far = int(np.argmax(nearest))
        chosen.append(far)
        nearest = np.minimum(nearest, _hilbert(log_theta, log_theta[[far]])[:, 0])
    return chosen


class _Trainer:
    """The offline stage: affine matrices, truth and reference solvers, the greedy loop."""

    def __init__(self, problem, kind, petsc_options):
        self.problem = problem
        self.kind = kind
        if petsc_options is None and kind.kind == "stokes":
            from .stokes import STOKES_SOLVER_OPTIONS

            petsc_options = STOKES_SOLVER_OPTIONS  # saddle point: LU, not Cholesky
        options = DEFAULT_SOLVER_OPTIONS if petsc_options is None else petsc_options
        self.options = options
        self._petsc = []
        self.solvers = []
        if kind.kind == "stokes":
            self._affine_stokes()
        else:
            self._affine()
        self.truth = self._solver("rb_truth", np.ones(self.Q))

    def _affine(self) -> None:
        """Assemble ``D``, ``A_q``, ``b_qj`` and the average terms with the cell's forms."""
        problem, kind = self.problem, self.kind
        cell = problem.cell
        field = problem.phases.function
        saved = {name: value for name, value in zip(cell.phases, problem.phases.values)}
        shape = problem.phases.shape
        block = int(np.prod(shape))
        msh = cell.mesh
        num_cells = msh.topology.index_map(cell.dim).size_local
        dof_of_cell = field.function_space.dofmap.list[:num_cells, 0]
        phase_of_cell = cell.phase_index_of_cells(num_cells)
        system = problem.system
        template = problem.solver.A
        values = field.x.array.reshape(-1, block)
        a = system.a
        self.D = template.duplicate()
        values[:] = 0.0
        field.x.scatter_forward()
        dolfinx_mpc.assemble_matrix(a, problem.mpc, bcs=problem.bcs, diagval=1.0, A=self.D)
        self._petsc.append(self.D)
        self.A = []
        d = kind.num_loads
        n = system.load.getLocalSize()
        num_phases = len(cell.phases)
        self.Q = num_phases * len(kind.terms)
        self.b = np.zeros((self.Q, d, n))
        self.avg = np.zeros((self.Q, d, d))
        volumes = problem.phases.volumes
        constant = kind.load_constant(problem)
        work = system.load.duplicate()
        self._petsc.append(work)
        try:
            q = 0
            for p in range(num_phases):
                for S in kind.terms:
                    values[:] = 0.0
                    values[dof_of_cell[phase_of_cell == p]] = S.reshape(shape).ravel()
                    field.x.scatter_forward()
                    A_q = template.duplicate()
                    dolfinx_mpc.assemble_matrix(a, problem.mpc, bcs=problem.bcs, diagval=0.0, A=A_q)
                    self._petsc.append(A_q)
                    self.A.append(A_q)
                    for j in range(d):
                        constant.value[...] = np.eye(d)[j]
                        self.b[q, j] = system.assemble_load(work).array_r
                    self.avg[q] = volumes[p] * S
                    q += 1
        finally:
            constant.value[...] = 0.0
            problem.phases.set(saved)
        self.A_csr = [_csr(A_q) for A_q in self.A]

    def _affine_stokes(self) -> None:
        """``D`` (divergence blocks, constrained diagonal), ``A_kl`` and ``bhat_j``."""
        import ufl
        from dolfinx import fem

        problem, kind = self.problem, self.kind
        d = kind.num_loads
        W = problem.W
        msh = problem.mesh
        weights = fem.Constant(msh, np.zeros((d, d)))
        div = fem.Constant(msh, 0.0)
        (u, p), (v, q) = ufl.split(ufl.TrialFunction(W)), ufl.split(ufl.TestFunction(W))
        viscous = sum(
            weights[k, l] * u[k].dx(l) * v[k].dx(l)
            for k in range(d)
            for l in range(d)  # noqa: E741
        )
        form = fem.form((viscous - div * (p * ufl.div(v) + q * ufl.div(u))) * ufl.dx)
        template = problem.solver.A
        self.D = template.duplicate()
        div.value = 1.0
        dolfinx_mpc.assemble_matrix(form, problem.mpc, bcs=problem.bcs, diagval=1.0, A=self.D)
        self._petsc.append(self.D)
        div.value = 0.0
        self.A = []
        for k, l in kind.terms:  # noqa: E741
            weights.value[...] = 0.0
            weights.value[k, l] = 1.0
            A_q = template.duplicate()
            dolfinx_mpc.assemble_matrix(form, problem.mpc, bcs=problem.bcs, diagval=0.0, A=A_q)
            self._petsc.append(A_q)
            self.A.append(A_q)
        self.Q = len(self.A)
        system = problem.system
        n = system.load.getLocalSize()
        work = system.load.duplicate()
        self._petsc.append(work)
        self.b = np.zeros((1, d, n))
        constant = kind.load_constant(problem)
        try:
            for j in range(d):
                constant.value[...] = np.eye(d)[j]
                self.b[0, j] = system.assemble_load(work).array_r
        finally:
            constant.value[...] = 0.0
        self.avg = np.zeros((self.Q, d, d))
        self.A_csr = [_csr(A_q) for A_q in self.A]

    def _solver(self, name: str, theta: np.ndarray) -> FactorisedSolver:
        """A factorised solver of ``D + sum theta_q A_q``."""
        A = self.D.duplicate(copy=True)
        self._petsc.append(A)
        solver = FactorisedSolver(
            self.problem.system.a, self.problem.mpc, self.problem.bcs, name, self.options, matrix=A
        )
        self.solvers.append(solver)
        self._set(solver, theta)
        return solver

    def _set(self, solver: FactorisedSolver, theta: np.ndarray) -> None:
        same = PETSc.Mat.Structure.SAME_NONZERO_PATTERN
        self.D.copy(solver.A, structure=same)
        for t, A_q in zip(theta, self.A):
            solver.A.axpy(float(t), A_q, structure=same)
        solver.factorise(assemble=False)

    def solve(self, solver: FactorisedSolver, rhs: np.ndarray, label: str) -> np.ndarray:
        """``X^-1 rhs`` for the columns of ``rhs`` (``(n, k)``)."""
        out = np.empty_like(rhs)
        b = PETSc.Vec().createSeq(rhs.shape[0], comm=MPI.COMM_SELF)
        x = b.duplicate()
        try:
            for k in range(rhs.shape[1]):
                b.array[:] = rhs[:, k]
                solver.solve(b, x, label=f" ({label} {k})")
                out[:, k] = x.array_r
        finally:
            b.destroy()
            x.destroy()
        return out

    def truth_solve(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The full correctors (reduced vectors, ``(n, d)``) and tensor at ``theta``."""
        self._set(self.truth, theta)
        b = np.tensordot(self.kind.load_coefficients(theta), self.b, axes=1)  # (d, n)
        X = self.solve(self.truth, b.T.copy(), "truth load case")
        avg = np.tensordot(theta, self.avg, axes=1)
        T = self.kind.sign * (avg - b @ X) / self.problem.cell.volume
        return X, 0.5 * (T + T.T)

    # -- the growing basis: Riesz representers and Gram matrices, one snapshot at a time -----
    def start(self, references: np.ndarray, growth: dict | None = None) -> None:
        """Factorise the reference inner products; an empty basis or a saved ``growth``."""
        Q, d = self.Q, self.kind.num_loads
        L = self.b.shape[0]
        M = len(references)
        self.references = np.asarray(references)
        self.ref_solvers = [self._solver(f"rb_reference_{m}", references[m]) for m in range(M)]
        self.X0_csr = sum(t * A for t, A in zip(references[0], self.A_csr))
        n = self.b.shape[2]
        self.b_flat = self.b.reshape(L * d, n).T  # (n, L d) load term vectors
        if growth is None:
            Yb = [
                self.solve(s, self.b_flat.copy(), "Riesz representer of a load term")
                for s in self.ref_solvers
            ]
            self.Gbb = np.array([self.b_flat.T @ Y for Y in Yb])
            self.Z = np.zeros((n, 0))
            self.Gba = np.zeros((M, L * d, Q, 0))
            self.Gaa = np.zeros((M, Q, 0, Q, 0))
        else:
            self.Z = np.asarray(growth["Z"], dtype=np.float64)
            if self.Z.shape[0] != n:
                raise ValueError(
                    f"the saved basis vectors have {self.Z.shape[0]} entries, the cell {n}"
                )
            self.Gbb = np.asarray(growth["Gbb"])
            self.Gba = np.asarray(growth["Gba"])
            self.Gaa = np.asarray(growth["Gaa"])
        self.AZ = np.stack([A @ self.Z for A in self.A_csr])  # (Q, n, N)

    def growth(self) -> dict:
        """What :meth:`start` needs to grow the basis further (no factorisation)."""
        return {"Z": self.Z, "Gbb": self.Gbb, "Gba": self.Gba, "Gaa": self.Gaa}

    def extend(self, X: np.ndarray) -> int:
        """Add the snapshots ``X`` (``(n, d)`` correctors), orthonormalised in ``X_0``.

        Returns the number of functions added (0: all already in the span).
        """
        Q = self.Q
        n = self.b.shape[2]
        new = []
        for k in range(X.shape[1]):
            v = X[:, k].copy()
            norm0 = np.sqrt(v @ (self.X0_csr @ v))
            for _ in range(2):
                basis = np.column_stack([self.Z, *new]) if new else self.Z
                if basis.shape[1]:
                    v -= basis @ (basis.T @ (self.X0_csr @ v))
            norm = np.sqrt(max(v @ (self.X0_csr @ v), 0.0))
            if norm0 > 0 and norm > 1e-10 * norm0:
                new.append(v / norm)
        if not new:
            return 0
        Znew = np.column_stack(new)
        AZnew = np.stack([A @ Znew for A in self.A_csr])  # (Q, n, k)
        N0 = self.Z.shape[1]
        self.Z = np.hstack([self.Z, Znew])
        self.AZ = np.concatenate([self.AZ, AZnew], axis=2)
        k = Znew.shape[1]
        M = len(self.ref_solvers)
        Gba = np.zeros((M, *self.Gba.shape[1:3], N0 + k))
        Gaa = np.zeros((M, Q, N0 + k, Q, N0 + k))
        for m, s in enumerate(self.ref_solvers):
            Y = self.solve(s, AZnew.transpose(1, 0, 2).reshape(n, Q * k), "Riesz representer")
            Y = Y.reshape(n, Q, k)
            Gba[m, :, :, :N0] = self.Gba[m]
            Gba[m, :, :, N0:] = np.einsum("nt,nqk->tqk", self.b_flat, Y)
            aa_new = np.einsum("qnm,npk->qmpk", self.AZ, Y)  # (Q, N, Q, k)
            Gaa[m, :, :N0, :, :N0] = self.Gaa[m]
            Gaa[m, :, :, :, N0:] = aa_new
            Gaa[m, :, N0:, :, :] = aa_new.transpose(2, 3, 0, 1)
        self.Gba, self.Gaa = Gba, Gaa
        return k

    def online(self) -> dict:
        """The online data of the current basis."""
        Q, d = self.Q, self.kind.num_loads
        Ld = self.b.shape[0] * d
        M = len(self.ref_solvers)
        Z, N = self.Z, self.Z.shape[1]
        AN = np.einsum("nm,qnk->qmk", Z, self.AZ)
        AN = 0.5 * (AN + AN.transpose(0, 2, 1))
        FN = np.einsum("ljn,nm->ljm", self.b, Z)
        G = np.empty((M, Ld + Q * N, Ld + Q * N))
        for m in range(M):
            ba = self.Gba[m].reshape(Ld, Q * N)
            G[m, :Ld, :Ld] = self.Gbb[m]
            G[m, :Ld, Ld:] = ba
            G[m, Ld:, :Ld] = ba.T
            G[m, Ld:, Ld:] = self.Gaa[m].reshape(Q * N, Q * N)
        G = 0.5 * (G + G.transpose(0, 2, 1))
        return {"AN": AN, "FN": FN, "avg": self.avg, "G": G, "references": self.references}

    def run(
        self, rb, theta_train, references, tolerance, max_size, verbose, scale_train=None
    ) -> dict:
        """The greedy loop; fills ``rb.history`` and ``rb.converged``; returns the online data."""
        self.start(references)
        rb.history, rb.converged = [], False
        theta_star = references[0]
        data = None
        while True:
            X, _ = self.truth_solve(theta_star)
            if not self.extend(X):
                warnings.warn(
                    "reduced basis: the snapshots at the worst training point are already in "
                    "the basis; the greedy stops (the bound there is round-off)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                break
            N = self.Z.shape[1]
            data = self.online()
            rb._set_online(data)
            relative = rb._evaluate_coefficients(theta_train, scale_train)["relative_error_bound"]
            worst = int(np.argmax(relative))
            rb.history.append((N, float(relative[worst])))
            if verbose:
                print(f"reduced basis: N = {N}, largest relative bound {relative[worst]:.3e}")
            if relative[worst] <= tolerance:
                rb.converged = True
                break
            if N >= max_size:
                warnings.warn(
                    f"reduced basis: {N} functions reached max_size={max_size} with a relative "
                    f"bound of {relative[worst]:.3e} > tolerance {tolerance:.1e}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                break
            theta_star = theta_train[worst]
        return data

    def destroy(self) -> None:
        for solver in self.solvers:
            solver.destroy()
        for obj in self._petsc:
            obj.destroy()
