"""The finite-strain periodic cell: compressible Neo-Hookean phases, Newton on the fluctuation.

The nonlinear micro solve of the FE² elasticity engine. The macro input is the
displacement gradient ``H`` (``d x d``), i.e. the macro deformation gradient
``F_macro = I + H``. The micro deformation gradient is::

    F = F_macro + grad(w),   w periodic (dolfinx_mpc), one interior node pinned,

and ``w`` minimises the cell energy ``int_Y psi(F) dx`` with the compressible
Neo-Hookean energy of every phase::

    psi(F) = mu/2 (I1 - d) - mu ln J + lambda/2 (ln J)^2,   I1 = tr(F^T F), J = det F,

``d`` the dimension; 2D cells are plane strain (``F_33 = 1``, which leaves ``psi``
unchanged). The first Piola stress and its tangent are::

    P = dpsi/dF = mu (F - F^-T) + lambda ln J F^-T,
    A_iJkL = dP_iJ/dF_kL = mu d_ik d_JL + (mu - lambda ln J) F^-1_Li F^-1_Jk
             + lambda F^-1_Ji F^-1_Lk.

Homogenised response (``<.> = 1/|Y| int_Y . dx``): the average first Piola stress
``P* = <P>`` and the consistent macro tangent ``A* = dP*/dF_macro``. Differentiating the
discrete equilibrium ``R(w, H) = 0`` gives, for every unit macro direction ``E_kl``
(``(E_kl)_mn = d_km d_ln``), the fluctuation sensitivity ``dw_kl = dw/dH_kl`` from

    K dw_kl = -dR/dH[E_kl],   K = dR/dw (the Jacobian at the converged state),

solved with the same factorisation of ``K``, and

    A*_ijkl = <A_ijkl> + <A_ijmn d_n (dw_kl)_m>.

The second term is evaluated through Galerkin orthogonality as
``-(1/|Y|) b_ij . x_kl`` with ``b_ij = -dR/dH[E_ij]`` (the assembled right-hand side of
load case ``ij``) and ``x_kl`` the reduced solution, exactly as the linear cells do (the
load cases and the energy average of :mod:`hmm_fem.cells.skeleton`); no finite
differences anywhere. The Newton iteration is PETSc SNES (:mod:`hmm_fem.cells.newton`).
At ``H = 0`` the tangent is the linear isotropic stiffness, so ``A*(0)`` is the C* of
:class:`~hmm_fem.cells.ElasticityCell`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import basix
import basix.ufl
import numpy as np
import ufl
from dolfinx import fem
from petsc4py import PETSc

from ..geometry import UnitCell
from ..materials.phases import as_lame
from .conditions import Periodic
from .newton import NewtonFailure, NonlinearCellProblem
from .skeleton import PhaseField
from .solver import DEFAULT_SOLVER_OPTIONS, LU_SOLVER_OPTIONS, CellSolveError

__all__ = ["HyperelasticCell", "FALLBACK_SOLVER_OPTIONS"]

#: The linear solver taken over when the first one fails: MUMPS LU with pivoting. The
#: Jacobian of a hyperelastic cell is symmetric but positive definite only while the
#: micro state is stable: under compression (micro buckling) and along a Newton path far
#: from equilibrium it can be indefinite, and the Cholesky factorisation of the default
#: solver (CHOLMOD, :data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`) then fails. Measured
#: factorisation times (P1, square cell of 4.1e3 dofs / cubic cell of 4.2e3 dofs):
#: CHOLMOD 0.017 s / 0.25 s, MUMPS LU 0.024 s / 0.76 s. So Cholesky first, LU on failure.
FALLBACK_SOLVER_OPTIONS = LU_SOLVER_OPTIONS

#: Supernodal CHOLMOD is always LL^T, so it fails exactly when the Jacobian is not
#: positive definite ("auto" may pick LDL^T for small matrices, which does not); print 0:
#: no CHOLMOD warning on stderr for these handled failures. Read when the factor is
#: created, so they live with the solver (:class:`~hmm_fem.solver_options.PrefixedOptions`).
_DEFAULT_OPTIONS = {
    **DEFAULT_SOLVER_OPTIONS,
    "mat_cholmod_factor": "supernodal",
    "mat_cholmod_print": 0,
}


def _format_matrix(M: np.ndarray) -> str:
    return "[" + ", ".join("[" + ", ".join(f"{x:.6g}" for x in row) + "]" for row in M) + "]"


class HyperelasticCell(NonlinearCellProblem):
    """Finite-strain periodic cell with compressible Neo-Hookean phases (2D plane strain).

    The cell is built once: function spaces, periodic constraint, the residual, Jacobian
    and macro-load forms (compiled once; the macro displacement gradient ``H`` is a
    :class:`dolfinx.fem.Constant`) and the matrix sparsity. :meth:`respond` runs Newton on
    the periodic fluctuation ``w`` for ``F_macro = I + H`` and returns the average first
    Piola stress ``P* = <P>`` and the consistent tangent ``A* = dP*/dF_macro``:

        A*_ijkl = <A_ijkl> + <A_ijmn d_n (dw_kl)_m>,   K dw_kl = -dR/dH[E_kl],

    with ``K`` the Jacobian at the converged state (its factorisation serves the ``d*d``
    tangent load cases; see the module docstring). ``dH = dF_macro``, so ``A*`` is also
    ``dP*/dH``.

    **Newton** (PETSc SNES ``newtonls``, backtracking line search; see
    :class:`~hmm_fem.cells.newton.CellNewton`). The residual ``R`` is reduced on the
    periodic masters (the pinned entry zero), and the iteration stops when

        ||R||_2 <= max(rtol ||H||_F, atol) * r_ref,   r_ref = c_max ||g||_2,

    with ``c_max = max over phases of (lambda + 2 mu)`` and
    ``g_a = int_Y (1/h) sum_i (phi_a)_i dx`` (``h`` the cell diameter): the nodal
    out-of-balance forces are below those of a stress ``rtol ||H|| c_max``, i.e. ``rtol``
    relative to the stress scale of the load, with the absolute floor ``atol c_max``
    (round-off). The criterion does not depend on the initial guess, so warm and cold
    starts stop at the same accuracy. A trial state with ``J = det F <= 0`` (or not
    finite) at a quadrature point is a domain error: the line search backs off. The
    Jacobian is assembled and factorised at every iterate, the converged one included,
    whose factorisation serves the tangent (a call costs ``iterations + 1``
    factorisations).

    **Warm start.** The converged fluctuation of the last successful call is the initial
    guess of the next one (for a nearby ``H`` Newton then needs fewer iterations). If
    that guess is not admissible for the new ``H`` (``J <= 0`` somewhere) or its Newton
    iteration fails, a cold start from ``w = 0`` (where ``J = det F_macro`` everywhere) is
    tried before giving up. :meth:`reset` forgets the state. A call with the same ``H`` as
    the last successful one returns the stored result without solving. After a failure
    the cell is back in its last converged state and stays usable.

    Example:
        >>> cell = hmm_fem.cells.square(0.3)
        >>> problem = HyperelasticCell(cell, {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)})
        >>> P, A = problem.respond(np.array([[0.1, 0.05], [0.0, -0.02]]))
        >>> problem.iterations, problem.history   # Newton steps, residual norms

    Args:
        cell: The unit cell (mesh with phase tags).
        phases: ``(E, nu)`` of every phase, by phase name or tag (``E > 0``,
            ``-1 < nu < 0.5``), converted to the Lame constants ``mu, lambda``.
        degree: Polynomial degree of the vector Lagrange fluctuation space.
        petsc_options: Options under the cell's prefix: the ``snes_*`` ones go to the SNES
            (over :data:`~hmm_fem.cells.newton.NEWTON_OPTIONS`), the others to the linear
            solver; default CHOLMOD Cholesky (:data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`).
            Whenever a factorisation or solve with them fails (an indefinite Jacobian),
            that Jacobian is factorised with :data:`FALLBACK_SOLVER_OPTIONS` (MUMPS LU).
        rtol: Newton tolerance, relative to the load ``||H||_F`` (see above).
        atol: Absolute floor of the Newton tolerance, a strain (see above).
        max_iterations: Largest number of Newton steps per start.
        quadrature_degree: Quadrature degree of all cell integrals; default
            ``2 (degree - 1)``, exact for P1 (piecewise constant integrands).

    Attributes:
        fluctuation: The periodic fluctuation ``w`` of the last solve.
        macro_gradient: The macro displacement gradient ``H`` in the forms.
        lame: The Lame constants ``(mu, lambda)`` as a cell-wise (DG0) field; ``mu`` and
            ``lam`` are its components (UFL).
        newton: The :class:`~hmm_fem.cells.newton.CellNewton` (the SNES and its log).
        iterations: Newton steps of the last solve (0 when the stored result was returned;
            summed over the increments of a load path).
        path: The load fractions reached by the last solve (``[1.0]`` for a plain solve;
            the increments of a sub-stepped one, see :meth:`respond`).
        history: Residual norms ``||R||`` of the last solve, one per iteration, of the
            start that converged.
        seconds: Wall time of the last :meth:`respond` (Newton and tangent).
        tangent_seconds: Part of ``seconds`` spent on the tangent (load cases and sums).
        tangent_solver: ``"primary"`` or ``"fallback"``: the solver that factorised the
            converged Jacobian. With the default (supernodal CHOLMOD, an LL^T factorisation
            that fails on any non-positive pivot), ``"fallback"`` means that the converged
            Jacobian is not positive definite: the micro state is not a strict energy
            minimum among periodic fluctuations (e.g. a cell compressed beyond micro
            buckling and held in its symmetric state); P* and A* are still the exact
            response of that state.
        residual_reference: ``r_ref`` of the stopping criterion.
        log: The Newton log of the last solve (one line per iteration: residual norm,
            step length, smallest ``J``; the factorisation fallbacks; the SNES converged
            reason of a failed start).
    """

    def __init__(
        self,
        cell: UnitCell,
        phases: Mapping,
        degree: int = 1,
        petsc_options: dict | None = None,
        rtol: float = 1e-10,
        atol: float = 1e-13,
        max_iterations: int = 25,
        quadrature_degree: int | None = None,
    ):
        super().__init__(
            cell,
            degree,
            rtol=rtol,
            atol=atol,
            max_iterations=max_iterations,
            quadrature_degree=quadrature_degree,
        )
        qdeg = self.quadrature_degree
        d = cell.dim
        msh = cell.mesh
        self.phases = PhaseField(
            cell, (2,), "lame", lambda value, what: np.array(as_lame(value, what)), "(E, nu)"
        )
        self.phases.set(phases)
        self.lame = self.phases.function
        self.mu, self.lam = self.lame[0], self.lame[1]
        self.V = fem.functionspace(msh, ("Lagrange", self.degree, (d,)))
        condition = Periodic()
        constraint = condition.constrain(self.V, lengths=cell.lengths)
        self.mpc, self.bcs = constraint.mpc, constraint.bcs

        # Forms, compiled once.
        dx = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": qdeg})
        dtype = PETSc.ScalarType
        self.macro_gradient = fem.Constant(msh, np.zeros((d, d), dtype=dtype))
        self._selector = fem.Constant(msh, np.zeros((d, d), dtype=dtype))
        self.fluctuation = fem.Function(constraint.space, name="fluctuation")
        w = self.fluctuation
        F = ufl.Identity(d) + self.macro_gradient + ufl.grad(w)
        energy = self._psi(F) * dx
        Fv = ufl.variable(F)
        P = ufl.diff(self._psi(Fv), Fv)
        A = ufl.diff(P, Fv)
        i, j, k, m = ufl.indices(4)
        AS = ufl.as_tensor(A[i, j, k, m] * self._selector[k, m], (i, j))
        linear_options, snes_options = self.split_options(petsc_options)
        # K = dR/dw, and -dR/dH[S]: the right-hand side of the tangent load case S.
        self.system = condition.system(
            self.V,
            lambda du, v: ufl.derivative(ufl.derivative(energy, w, v), w, du),
            lambda v: -ufl.inner(AS, ufl.grad(v)) * dx,
            lengths=cell.lengths,
            name="hyperelastic_cell",
            petsc_options=linear_options or _DEFAULT_OPTIONS,
            constraint=constraint,
        )
        self.solver = self.system.solver
        self._R = fem.form(ufl.derivative(energy, w, ufl.TestFunction(self.V)))
        self._K, self._L_tangent = self.system.a, self.system.L
        gdtype = msh.geometry.x.dtype
        R2, R4 = (
            fem.functionspace(
                msh, basix.ufl.real_element(msh.basix_cell(), value_shape=shape, dtype=gdtype)
            )
            for shape in ((d, d), (d,) * 4)
        )
        self._P_average = fem.form(ufl.inner(P, ufl.TestFunction(R2)) * dx)
        self._A_average = fem.form(ufl.inner(A, ufl.TestFunction(R4)) * dx)
        self._energy = fem.form(energy)
        points, _ = basix.make_quadrature(msh.basix_cell(), qdeg)
        self._J_expression = fem.Expression(ufl.det(F), points)
        self._cells = np.arange(msh.topology.index_map(d).size_local, dtype=np.int32)
        self._dw = self.system.load.duplicate()
        self._min_J = float("nan")
        self.path: list[float] = []
        self.newton = self._make_newton(
            self._R,
            w,
            self.system,
            snes_options=snes_options,
            linear_options=linear_options,
            prepare=self._admissible,
            note=lambda: f"min J {self._min_J:.3g}",
            domain="J = det F <= 0 (or NaN) at a quadrature point",
        )
        # Reference of the stopping criterion: nodal forces of a stress c_max.
        lame = self.phases.values
        self.residual_reference = self._residual_reference(
            self.system, dx, np.max(2.0 * lame[:, 0] + lame[:, 1])
        )

    # -- material ------------------------------------------------------------------------------
    def _psi(self, F):
        """Compressible Neo-Hookean energy density (UFL) at ``F``."""
        d = self.cell.dim
        lnJ = ufl.ln(ufl.det(F))
        return 0.5 * self.mu * (ufl.tr(F.T * F) - d) - self.mu * lnJ + 0.5 * self.lam * lnJ**2

    @property
    def phase_lame(self) -> dict[str, tuple[float, float]]:
        """The Lame constants ``(mu, lambda)`` of every phase, by name."""
        return {n: (float(c[0]), float(c[1])) for n, c in zip(self.cell.phases, self.phases.values)}

    @property
    def history(self) -> list[float]:
        """Residual norms of the last solve, one per Newton iteration."""
        return self.newton.history

    # -- Newton --------------------------------------------------------------------------------
    def _check_gradient(self, H) -> np.ndarray:
        d = self.cell.dim
        try:
            H = np.array(H, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"the macro displacement gradient H = {H!r} is not numeric") from err
        if H.shape != (d, d):
            raise ValueError(
                f"the macro displacement gradient H has shape {H.shape}; this {d}D cell needs "
                f"a {d}x{d} array (F_macro = I + H)"
            )
        if not np.all(np.isfinite(H)):
            raise ValueError(f"the macro displacement gradient H is not finite: {H.tolist()}")
        return H

    def _min_jacobian(self) -> float:
        """Smallest ``J = det F`` over the quadrature points (NaN if any is not finite)."""
        values = self._J_expression.eval(self.cell.mesh, self._cells)
        if not np.all(np.isfinite(values)):
            return float("nan")
        return float(values.min())

    def _admissible(self, w) -> bool:
        """The Newton hook: is ``J = det F > 0`` at every quadrature point of the iterate?"""
        self._min_J = self._min_jacobian()
        return self._min_J > 0.0

    def respond(
        self, H, *, substeps: int = 1, start: str = "last", max_bisections: int = 6
    ) -> tuple[np.ndarray, np.ndarray]:
        """Average first Piola stress and consistent tangent at ``F_macro = I + H``.

        By default one Newton solve at ``H`` (warm, then cold start). With ``substeps > 1``
        (a remedy for a load step too large for Newton) the macro gradient follows the
        straight path from the starting gradient ``H0`` to ``H`` in ``substeps`` equal
        increments, each a Newton solve warm-started from the previous one; an increment
        that fails is halved, at most ``max_bisections`` times. The tangent is computed at
        ``H`` only. A hyperelastic cell has no memory, so the path changes how the state
        is found, not which state (while the equilibrium at ``H`` is unique: a state
        reached past a micro instability depends on the path).

        Args:
            H: Macro displacement gradient, ``d x d`` (``H[i, J] = du_i / dX_J``).
            substeps: Number of equal increments of the load path (``>= 1``).
            start: ``"last"``: the path starts at the last converged state (``H0`` its
                gradient, 0 if none); ``"zero"``: at the undeformed state ``H0 = 0``,
                ``w = 0`` (an exact solution), as a load history from rest would.
            max_bisections: How often a failed increment may be halved (``>= 0``).

        Returns:
            ``(P, A)``: ``P* = <P>`` (``d x d``, ``P[i, J]``) and
            ``A* = dP*/dF_macro`` (``d x d x d x d``, ``A[i, J, k, L] = dP*_iJ / dF_kL``),
            in the units of the phase moduli. :attr:`iterations` counts the Newton steps
            of the whole path, :attr:`path` lists its converged load fractions.

        Raises:
            ValueError: if ``H`` has the wrong shape or is not finite, or for a bad
                ``substeps``, ``start`` or ``max_bisections``.
            CellSolveError: if ``det F_macro <= 0`` (at ``H`` or on the path: no
                admissible periodic state, the average of ``J`` is ``det F_macro``), or
                Newton fails (every start: no convergence in ``max_iterations`` steps,
                ``J <= 0`` for every step length, a non-finite residual, a failed
                factorisation; on a path, an increment halved ``max_bisections`` times).
                The message gives ``F_macro``, the iteration log and the SNES converged
                reasons; the cell is left in its last converged state.
        """
        H = self._check_gradient(H)
        if isinstance(substeps, bool) or int(substeps) != substeps or substeps < 1:
            raise ValueError(f"substeps must be an integer >= 1, got {substeps!r}")
        if start not in ("last", "zero"):
            raise ValueError(f"start must be 'last' or 'zero', got {start!r}")
        if (
            isinstance(max_bisections, bool)
            or int(max_bisections) != max_bisections
            or max_bisections < 0
        ):
            raise ValueError(f"max_bisections must be an integer >= 0, got {max_bisections!r}")
        stored = self._recall(H)
        if stored is not None:
            self.iterations = 0
            self.path = [1.0]
            self.seconds = self.tangent_seconds = 0.0
            return stored[0].copy(), stored[1].copy()
        start_time = time.perf_counter()
        d = self.cell.dim
        F_macro = np.eye(d) + H
        det = float(np.linalg.det(F_macro))
        where = f"hyperelastic cell '{self.cell.geometry}'"
        if not det > 0.0:
            raise CellSolveError(
                f"{where}: F_macro = {_format_matrix(F_macro)} has det = {det:.6g} <= 0; no "
                "periodic micro state has J > 0 everywhere (the cell average of J is det "
                "F_macro). Reduce the macro load step."
            )
        before = self.newton.committed
        if int(substeps) == 1 and start == "last":
            self._newton_at(H, where, F_macro, det)
            self.iterations = self.newton.iterations
            self.path = [1.0]
        else:
            self._follow_path(H, int(substeps), start, int(max_bisections), where)
        tangent_start = time.perf_counter()
        try:
            P, A = self._homogenised_response()
        except CellSolveError as err:
            self.newton.recommit(before)
            self._restore()
            raise CellSolveError(
                f"{where}: the tangent at F_macro = {_format_matrix(F_macro)} failed ({err}); "
                "the cell is back at its last converged state"
            ) from err
        if not (np.all(np.isfinite(P)) and np.all(np.isfinite(A))):
            self.newton.recommit(before)
            self._restore()
            raise CellSolveError(
                f"{where}: the response at F_macro = {_format_matrix(F_macro)} is not finite; "
                "the cell is back at its last converged state"
            )
        self.newton.commit()
        self._remember(H, (P, A))
        now = time.perf_counter()
        self.tangent_seconds = now - tangent_start
        self.seconds = now - start_time
        return P.copy(), A.copy()

    def _newton_at(self, H: np.ndarray, where: str, F_macro: np.ndarray, det: float) -> None:
        """Newton at ``H`` from the committed state (warm, then cold); restores on failure."""
        self.macro_gradient.value[:] = H
        strain = max(self.rtol * float(np.linalg.norm(H)), self.atol)
        try:
            self.newton.solve(strain * self.residual_reference)
        except NewtonFailure as failure:
            self._restore()
            raise CellSolveError(
                f"{where}: Newton failed at F_macro = {_format_matrix(F_macro)} (det {det:.6g}); "
                f"the cell is back at its last converged state. Iterations:\n  {failure}"
            ) from None

    def _follow_path(
        self, H: np.ndarray, substeps: int, start: str, max_bisections: int, where: str
    ) -> None:
        """Newton along ``H0 + s (H - H0)``, ``s`` to 1 in increments, halving failed ones.

        Every converged increment is committed (the warm start of the next); on failure the
        committed state before the path is put back and :class:`CellSolveError` raised.
        """
        d = self.cell.dim
        before = self.newton.committed
        stored_for = self._stored_for
        if start == "zero" or stored_for is None:
            H0 = np.zeros((d, d))
            self.newton.recommit(None)
        else:
            H0 = np.array(stored_for, copy=True)
        ds = 1.0 / substeps
        smallest = ds / 2.0**max_bisections
        s, iterations, path, halvings = 0.0, 0, [], 0
        while s < 1.0:
            step = min(ds, 1.0 - s)
            target = 1.0 if step >= 1.0 - s - 1e-12 else s + step
            Ht = H if target == 1.0 else H0 + target * (H - H0)
            F_macro = np.eye(d) + Ht
            det = float(np.linalg.det(F_macro))
            failure = None
            if not det > 0.0:
                failure = f"det F_macro = {det:.6g} <= 0 on the path"
            else:
                try:
                    self._newton_at(Ht, where, F_macro, det)
                except CellSolveError as err:
                    failure = str(err)
            if failure is None:
                self.newton.commit()
                iterations += self.newton.iterations
                path.append(target)
                s = target
                continue
            if step / 2.0 < smallest * (1.0 - 1e-12) or not det > 0.0:
                self.newton.recommit(before)
                self.macro_gradient.value[:] = (
                    np.zeros((d, d)) if stored_for is None else stored_for
                )
                self.iterations = iterations
                self.path = path
                raise CellSolveError(
                    f"{where}: the load path from H0 = {_format_matrix(H0)} to H = "
                    f"{_format_matrix(H)} ({substeps} increments, {halvings} halvings) failed "
                    f"at the fraction {target:.6g} after reaching {s:.6g}; the cell is back at "
                    f"its last converged state. {failure}"
                )
            ds = step / 2.0
            halvings += 1
        self.iterations = iterations
        self.path = path

    def _restore(self) -> None:
        """Back to the last converged state (fluctuation and macro gradient)."""
        self.newton.restore()
        d = self.cell.dim
        self.macro_gradient.value[:] = (
            np.zeros((d, d)) if self._stored_for is None else self._stored_for
        )

    def _homogenised_response(self) -> tuple[np.ndarray, np.ndarray]:
        """``P*`` and ``A*`` at the converged state, with the factorised Jacobian."""
        d = self.cell.dim
        solver = self.newton.factorise_at_solution()
        self.tangent_solver = self.newton.tangent_solver
        P = fem.assemble_vector(self._P_average).array[: d * d].reshape(d, d) / self.cell.volume
        A_mean = fem.assemble_vector(self._A_average).array[: d**4].reshape((d * d, d * d))
        units = np.eye(d * d).reshape(-1, d, d)

        def fill(kl):
            self._selector.value[:] = units[kl]
            self.system.assemble_load()

        loads, solutions = self._solve_load_cases(
            [f"tangent load case {k}{m}" for k in range(d) for m in range(d)],
            fill,
            solver,
            self.system.load,
            lambda kl: self._dw,
        )
        self._selector.value[:] = 0.0
        # <A_ijmn d_n (dw_kl)_m> |Y| = int E_ij : A : grad(dw_kl) = -b_ij . x_kl; not
        # symmetrised (the major symmetry of A* is a check for callers).
        A = self._energy_average(loads, solutions, A_mean, self.system.zeroed_entries)
        return P, A.reshape((d,) * 4)

    # -- extras -----------------------------------------------------------------------------
    def energy(self, H) -> float:
        """Average strain energy ``<psi(F)>`` at the solved state for ``F_macro = I + H``.

        Solves (warm started) unless ``H`` is the last solved one. ``P* = d<psi>/dF_macro``.
        """
        self.respond(H)
        return float(fem.assemble_scalar(self._energy)) / self.cell.volume

    def min_jacobian(self) -> float:
        """Smallest ``J = det F`` over the quadrature points of the current state."""
        return self._min_jacobian()

    def reset(self) -> None:
        """Forget the converged state: the next call starts from ``w = 0``."""
        self.newton.reset()
        self._forget()
        self.macro_gradient.value[:] = 0.0

    def destroy(self) -> None:
        """Free the PETSc objects of this cell (and the options of its solvers)."""
        self.newton.destroy()
        self.system.destroy()
        self._dw.destroy()
