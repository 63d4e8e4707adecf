"""The finite-strain periodic cell: compressible Neo-Hookean phases, Newton on the fluctuation.

The nonlinear micro solve of the FE² elasticity engine. The macro input is the
displacement gradient ``H`` (``d x d``), i.e. the macro deformation gradient
``F_macro = I + H``. The micro deformation gradient is

    F = F_macro + grad(w),   w periodic (dolfinx_mpc), one interior node pinned,

and ``w`` minimises the cell energy ``int_Y psi(F) dx`` with the compressible
Neo-Hookean energy of every phase,

    psi(F) = mu/2 (I1 - d) - mu ln J + lambda/2 (ln J)^2,   I1 = tr(F^T F), J = det F,

``d`` the dimension; 2D cells are plane strain (``F_33 = 1``, which leaves ``psi``
unchanged). The first Piola stress and its tangent are

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
load case ``ij``) and ``x_kl`` the reduced solution, exactly as the linear cells do; no
finite differences anywhere. At ``H = 0`` the tangent is the linear isotropic
stiffness, so ``A*(0)`` is the C* of :class:`~hmm_fem.cells.ElasticityCell`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import basix
import basix.ufl
import dolfinx.fem.petsc
import dolfinx_mpc
import numpy as np
import ufl
from dolfinx import fem
from petsc4py import PETSc

from ..geometry import UnitCell
from ..materials.phases import as_lame
from .periodic import periodic_constraint
from .solver import CellSolveError, FactorisedSolver

__all__ = ["HyperelasticCell", "FALLBACK_SOLVER_OPTIONS"]

#: The linear solver taken over when the first one fails: MUMPS LU with pivoting. The
#: Jacobian of a hyperelastic cell is symmetric but positive definite only while the
#: micro state is stable: under compression (micro buckling) and along a Newton path far
#: from equilibrium it can be indefinite, and the Cholesky factorisation of the default
#: solver (CHOLMOD, :data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`) then fails. Measured
#: factorisation times (P1, square cell of 4.1e3 dofs / cubic cell of 4.2e3 dofs):
#: CHOLMOD 0.017 s / 0.25 s, MUMPS LU 0.024 s / 0.76 s. So Cholesky first, LU on failure.
FALLBACK_SOLVER_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}

#: Largest number of step halvings of one Newton step before the solve is given up.
MAX_STEP_HALVINGS = 8


def _format_matrix(M: np.ndarray) -> str:
    return "[" + ", ".join("[" + ", ".join(f"{x:.6g}" for x in row) + "]" for row in M) + "]"


class HyperelasticCell:
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

    **Newton.** Each iteration assembles the residual ``R`` (reduced on the periodic
    masters; the pinned entry zero) and stops when

        ||R||_2 <= max(rtol ||H||_F, atol) * r_ref,   r_ref = c_max ||g||_2,

    with ``c_max = max over phases of (lambda + 2 mu)`` and
    ``g_a = int_Y (1/h) sum_i (phi_a)_i dx`` (``h`` the cell diameter): the nodal
    out-of-balance forces are below those of a stress ``rtol ||H|| c_max``, i.e. ``rtol``
    relative to the stress scale of the load, with the absolute floor ``atol c_max``
    (round-off). The criterion does not depend on the initial guess, so warm and cold
    starts stop at the same accuracy. Otherwise the Jacobian is assembled and factorised,
    and the full Newton step is taken unless it makes ``J = det F <= 0`` (or non-finite)
    at a quadrature point; then it is halved, at most :data:`MAX_STEP_HALVINGS` times.
    The Jacobian is assembled and factorised at every iterate, the converged one
    included, whose factorisation serves the tangent (a call costs ``iterations + 1``
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
        petsc_options: Linear solver options; default CHOLMOD Cholesky
            (:data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`). Whenever a factorisation or
            solve with them fails (an indefinite Jacobian), that Jacobian is factorised
            with :data:`FALLBACK_SOLVER_OPTIONS` (MUMPS LU) instead.
        rtol: Newton tolerance, relative to the load ``||H||_F`` (see above).
        atol: Absolute floor of the Newton tolerance, a strain (see above).
        max_iterations: Largest number of Newton steps per start.
        quadrature_degree: Quadrature degree of all cell integrals; default
            ``2 (degree - 1)``, exact for P1 (piecewise constant integrands).

    Attributes:
        fluctuation: The periodic fluctuation ``w`` of the last solve.
        macro_gradient: The macro displacement gradient ``H`` in the forms.
        iterations: Newton steps of the last solve (0: the initial guess had converged;
            0 also when the stored result was returned).
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
            step length, smallest ``J``).
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
        if int(degree) < 1:
            raise ValueError(f"degree must be >= 1, got {degree}")
        for name, value in (("rtol", rtol), ("atol", atol)):
            if not (np.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        self.cell = cell
        self.degree = int(degree)
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_iterations = int(max_iterations)
        qdeg = 2 * (self.degree - 1) if quadrature_degree is None else int(quadrature_degree)
        if qdeg < 0:
            raise ValueError(f"quadrature_degree must be >= 0, got {quadrature_degree}")
        self.quadrature_degree = qdeg
        d = cell.dim
        msh = cell.mesh
        self.V = fem.functionspace(msh, ("Lagrange", self.degree, (d,)))
        self.mpc, self.bcs = periodic_constraint(self.V, cell.lengths)

        # Lame constants as cell-wise constant fields.
        DG0 = fem.functionspace(msh, ("DG", 0))
        self.mu = fem.Function(DG0, name="mu")
        self.lam = fem.Function(DG0, name="lambda")
        imap = msh.topology.index_map(d)
        num_cells = imap.size_local + imap.num_ghosts
        dofs = DG0.dofmap.list[:num_cells, 0]
        phase_of_dof = np.empty(num_cells, dtype=np.int32)
        phase_of_dof[dofs] = cell.phase_index_of_cells(num_cells)
        self._phase_lame = self._phase_constants(phases)
        self.mu.x.array[:] = self._phase_lame[phase_of_dof, 0]
        self.lam.x.array[:] = self._phase_lame[phase_of_dof, 1]
        self.mu.x.scatter_forward()
        self.lam.x.scatter_forward()

        # Forms, compiled once.
        dx = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": qdeg})
        dtype = PETSc.ScalarType
        self.macro_gradient = fem.Constant(msh, np.zeros((d, d), dtype=dtype))
        self._selector = fem.Constant(msh, np.zeros((d, d), dtype=dtype))
        self.fluctuation = fem.Function(self.mpc.function_space, name="fluctuation")
        w = self.fluctuation
        v, du = ufl.TestFunction(self.V), ufl.TrialFunction(self.V)
        Id = ufl.Identity(d)
        F = Id + self.macro_gradient + ufl.grad(w)
        energy = self._psi(F) * dx
        residual = ufl.derivative(energy, w, v)
        jacobian = ufl.derivative(residual, w, du)
        Fv = ufl.variable(F)
        P = ufl.diff(self._psi(Fv), Fv)
        A = ufl.diff(P, Fv)
        i, j, k, m = ufl.indices(4)
        AS = ufl.as_tensor(A[i, j, k, m] * self._selector[k, m], (i, j))
        # -dR/dH[S]: the right-hand side of the tangent load case of direction S.
        tangent_load = -ufl.inner(AS, ufl.grad(v)) * dx
        gdtype = msh.geometry.x.dtype
        R2 = fem.functionspace(
            msh, basix.ufl.real_element(msh.basix_cell(), value_shape=(d, d), dtype=gdtype)
        )
        R4 = fem.functionspace(
            msh, basix.ufl.real_element(msh.basix_cell(), value_shape=(d,) * 4, dtype=gdtype)
        )
        self._R = fem.form(residual)
        self._K = fem.form(jacobian)
        self._L_tangent = fem.form(tangent_load)
        self._P_average = fem.form(ufl.inner(P, ufl.TestFunction(R2)) * dx)
        self._A_average = fem.form(ufl.inner(A, ufl.TestFunction(R4)) * dx)
        self._energy = fem.form(energy)
        points, _ = basix.make_quadrature(msh.basix_cell(), qdeg)
        self._J_expression = fem.Expression(ufl.det(F), points)
        self._cells = np.arange(imap.size_local, dtype=np.int32)

        self._b = dolfinx_mpc.assemble_vector(self._R, self.mpc)
        self._dw = self._b.duplicate()
        self._slaves = np.asarray(self.mpc.slaves, dtype=np.int64)
        self.solver = FactorisedSolver(
            self._K, self.mpc, self.bcs, "hyperelastic_cell", petsc_options
        )
        # Supernodal CHOLMOD is always LL^T, so it fails exactly when the Jacobian is not
        # positive definite ("auto" may pick LDL^T for small matrices, which does not);
        # print 0: no CHOLMOD warning on stderr for these handled failures. Read when the
        # factor is created (first factorisation, and after a reset).
        self._factor_options = (
            {"mat_cholmod_factor": "supernodal", "mat_cholmod_print": 0}
            if petsc_options is None
            else {}
        )
        self._fallback: FactorisedSolver | None = None  # MUMPS LU, built on first need
        self._fallback_allowed = petsc_options is None or dict(petsc_options) != dict(
            FALLBACK_SOLVER_OPTIONS
        )
        self._active = self.solver
        self._primary_failed = False  # in the current call; then LU for the rest of it
        # Reference of the stopping criterion: nodal forces of a stress c_max.
        h = ufl.CellDiameter(msh)
        scale = fem.form(ufl.inner(ufl.as_vector([1.0] * d), v) / h * dx)
        g = dolfinx_mpc.assemble_vector(scale, self.mpc)
        g.array[self._slaves] = 0.0
        c_max = float(np.max(2.0 * self._phase_lame[:, 0] + self._phase_lame[:, 1]))
        self.residual_reference = c_max * g.norm()
        g.destroy()

        self._converged_w = np.zeros_like(w.x.array)
        self._converged_H: np.ndarray | None = None
        self._result: tuple[np.ndarray, np.ndarray] | None = None
        self.iterations = 0
        self.history: list[float] = []
        self.log: list[str] = []
        self.tangent_solver = "primary"
        self._tolerance = 0.0
        self.seconds = 0.0
        self.tangent_seconds = 0.0

    # -- material ------------------------------------------------------------------------------
    def _psi(self, F):
        """Compressible Neo-Hookean energy density (UFL) at ``F``."""
        d = self.cell.dim
        lnJ = ufl.ln(ufl.det(F))
        return 0.5 * self.mu * (ufl.tr(F.T * F) - d) - self.mu * lnJ + 0.5 * self.lam * lnJ**2

    def _phase_constants(self, phases: Mapping) -> np.ndarray:
        """The ``(num_phases, 2)`` array of phase ``(mu, lambda)``, validated."""
        return np.array(
            [
                as_lame(value, f"(E, nu) of phase '{name}' (tag {tag})")
                for name, tag, value in self.cell.phase_values(phases, "(E, nu)")
            ]
        )

    @property
    def phase_lame(self) -> dict[str, tuple[float, float]]:
        """The Lame constants ``(mu, lambda)`` of every phase, by name."""
        return {n: (float(c[0]), float(c[1])) for n, c in zip(self.cell.phases, self._phase_lame)}

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

    def _assemble_residual(self) -> float:
        """``self._b = R(w)`` (reduced: slaves and pin zero); returns ``||R||_2``."""
        dolfinx_mpc.assemble_vector(self._R, self.mpc, self._b)
        dolfinx.fem.petsc.set_bc(self._b, self.bcs)
        self._b.array[self._slaves] = 0.0
        return self._b.norm()

    def _factorise(self, log: list[str], converged: bool = False) -> None:
        """Factorise the Jacobian at the current state: the primary solver, else LU.

        Once the primary solver has failed in a call, the Newton steps of the rest of the
        call use LU; the converged Jacobian is always tried with the primary solver first,
        so that :attr:`tangent_solver` tells whether it is positive definite.
        """
        if self._primary_failed and not converged:
            self._fallback.factorise()
            self._active = self._fallback
            return
        self._active = self.solver
        opts = PETSc.Options()
        for key, value in self._factor_options.items():
            opts[self.solver.prefix + key] = value
        try:
            self.solver.factorise()
        except CellSolveError as err:
            self._switch_to_fallback(err, log)
        finally:
            for key in self._factor_options:
                opts.delValue(self.solver.prefix + key)

    def _switch_to_fallback(self, err: CellSolveError, log: list[str]) -> None:
        if not self._fallback_allowed:
            raise err
        # A failed factorisation leaves the factor unusable (CHOLMOD: "cannot operate on
        # supernodal L"): reset the KSP so that the next one starts afresh.
        self.solver.ksp.reset()
        self.solver.ksp.setOperators(self.solver.A)
        if self._factor_options:
            reason = "Cholesky failed: the Jacobian is not positive definite"
        else:
            reason = f"the primary solver failed ({err})"
        log.append(f"    {reason}; factorised with MUMPS LU instead")
        if self._fallback is None:
            self._fallback = FactorisedSolver(
                self._K, self.mpc, self.bcs, "hyperelastic_cell_lu", FALLBACK_SOLVER_OPTIONS
            )
        self._fallback.factorise()
        self._active = self._fallback
        self._primary_failed = True

    def _solve(self, x: PETSc.Vec, label: str, log: list[str]) -> None:
        """Solve ``K x = self._b`` with the current factorisation (LU if the first fails)."""
        try:
            self._active.solve(self._b, x, label=label)
        except CellSolveError as err:
            if self._active is not self.solver:
                raise
            self._switch_to_fallback(err, log)
            self._active.solve(self._b, x, label=label)

    def _newton(self, log: list[str]) -> list[float]:
        """Newton from the current ``w``; returns the residual history or raises ``_Failed``."""
        w = self.fluctuation
        history: list[float] = []
        for iteration in range(self.max_iterations + 1):
            norm = self._assemble_residual()
            history.append(norm)
            line = f"  iteration {iteration}: ||R|| = {norm:.3e}"
            if not np.isfinite(norm):
                log.append(line)
                raise _Failed("the residual is not finite (NaN)")
            if norm <= self._tolerance:
                log.append(line + " (converged)")
                self._factorise(log, converged=True)  # for the tangent
                return history
            log.append(line)
            index = len(log) - 1
            if iteration == self.max_iterations:
                raise _Failed(
                    f"no convergence in {self.max_iterations} Newton iterations "
                    f"(||R|| = {norm:.3e} > {self._tolerance:.3e})"
                )
            self._factorise(log)
            self._b.scale(-1.0)
            self._solve(self._dw, f" (Newton iteration {iteration})", log)
            start = w.x.array.copy()
            step = self._dw.array_r
            alpha = 1.0
            for _ in range(MAX_STEP_HALVINGS + 1):
                w.x.array[:] = start
                w.x.array[: step.size] += alpha * step
                self.mpc.backsubstitution(w)
                min_J = self._min_jacobian()
                if min_J > 0.0:
                    break
                alpha *= 0.5
            else:
                w.x.array[:] = start
                self.mpc.backsubstitution(w)
                raise _Failed(
                    f"every Newton step, down to {2.0**-MAX_STEP_HALVINGS:.1e} times the full "
                    f"one, makes J = det F <= 0 (or NaN) somewhere (min J = {min_J:.3e})"
                )
            log[index] += f", step {alpha:g}, min J {min_J:.3g}"
        raise AssertionError("unreachable")  # pragma: no cover

    def respond(self, H) -> tuple[np.ndarray, np.ndarray]:
        """Average first Piola stress and consistent tangent at ``F_macro = I + H``.

        Args:
            H: Macro displacement gradient, ``d x d`` (``H[i, J] = du_i / dX_J``).

        Returns:
            ``(P, A)``: ``P* = <P>`` (``d x d``, ``P[i, J]``) and
            ``A* = dP*/dF_macro`` (``d x d x d x d``, ``A[i, J, k, L] = dP*_iJ / dF_kL``),
            in the units of the phase moduli.

        Raises:
            ValueError: if ``H`` has the wrong shape or is not finite.
            CellSolveError: if ``det F_macro <= 0`` (no admissible periodic state: the
                average of ``J`` is ``det F_macro``), or Newton fails (no convergence in
                ``max_iterations`` steps, ``J <= 0`` for every step length, a non-finite
                residual, a failed factorisation). The message gives ``F_macro`` and the
                iteration history; the cell is left in its last converged state.
        """
        H = self._check_gradient(H)
        if self._result is not None and np.array_equal(H, self._converged_H):
            self.iterations = 0
            self.seconds = self.tangent_seconds = 0.0
            return self._result[0].copy(), self._result[1].copy()
        start_time = time.perf_counter()
        d = self.cell.dim
        F_macro = np.eye(d) + H
        det = float(np.linalg.det(F_macro))
        if not det > 0.0:
            raise CellSolveError(
                f"hyperelastic cell '{self.cell.geometry}': F_macro = {_format_matrix(F_macro)} "
                f"has det = {det:.6g} <= 0; no periodic micro state has J > 0 everywhere (the "
                "cell average of J is det F_macro). Reduce the macro load step."
            )
        self.macro_gradient.value[:] = H
        strain = max(self.rtol * float(np.linalg.norm(H)), self.atol)
        self._tolerance = strain * self.residual_reference
        w = self.fluctuation
        starts = ["cold"] if not np.any(self._converged_w) else ["warm", "cold"]
        log: list[str] = []
        history = None
        self._primary_failed = False
        for kind in starts:
            w.x.array[:] = self._converged_w if kind == "warm" else 0.0
            log.append(f"{kind} start:")
            if kind == "warm" and not self._min_jacobian() > 0.0:
                log.append("  the last converged fluctuation has J <= 0 at this F_macro")
                continue
            try:
                history = self._newton(log)
                break
            except (_Failed, CellSolveError) as err:
                log.append(f"  failed: {err}")
        if history is None:
            self._restore()
            steps = "\n  ".join(log)
            raise CellSolveError(
                f"hyperelastic cell '{self.cell.geometry}': Newton failed at F_macro = "
                f"{_format_matrix(F_macro)} (det {det:.6g}); the cell is back at its last "
                f"converged state. Iterations:\n  {steps}"
            )
        self.history = history
        self.log = log
        self.tangent_solver = "primary" if self._active is self.solver else "fallback"
        self.iterations = len(history) - 1
        tangent_start = time.perf_counter()
        try:
            P, A = self._homogenised_response()
        except CellSolveError as err:
            self._restore()
            raise CellSolveError(
                f"hyperelastic cell '{self.cell.geometry}': the tangent at F_macro = "
                f"{_format_matrix(F_macro)} failed ({err}); the cell is back at its last "
                "converged state"
            ) from err
        if not (np.all(np.isfinite(P)) and np.all(np.isfinite(A))):
            self._restore()
            raise CellSolveError(
                f"hyperelastic cell '{self.cell.geometry}': the response at F_macro = "
                f"{_format_matrix(F_macro)} is not finite; the cell is back at its last "
                "converged state"
            )
        self._converged_w = w.x.array.copy()
        self._converged_H = H.copy()
        self._result = (P, A)
        now = time.perf_counter()
        self.tangent_seconds = now - tangent_start
        self.seconds = now - start_time
        return P.copy(), A.copy()

    def _restore(self) -> None:
        """Back to the last converged state (fluctuation and macro gradient)."""
        self.fluctuation.x.array[:] = self._converged_w
        d = self.cell.dim
        self.macro_gradient.value[:] = (
            np.zeros((d, d)) if self._converged_H is None else self._converged_H
        )

    def _homogenised_response(self) -> tuple[np.ndarray, np.ndarray]:
        """``P*`` and ``A*`` at the converged state, with the factorised Jacobian."""
        d = self.cell.dim
        volume = self.cell.volume
        P = fem.assemble_vector(self._P_average).array[: d * d].reshape(d, d) / volume
        A_mean = fem.assemble_vector(self._A_average).array[: d**4].reshape((d * d, d * d))
        loads = np.empty((d * d, self._b.getLocalSize()))
        solutions = np.empty_like(loads)
        for kl in range(d * d):
            self._selector.value[:] = np.eye(d * d)[kl].reshape(d, d)
            dolfinx_mpc.assemble_vector(self._L_tangent, self.mpc, self._b)
            dolfinx.fem.petsc.set_bc(self._b, self.bcs)
            self._b.array[self._slaves] = 0.0
            k, m = divmod(kl, d)
            self._active.solve(self._b, self._dw, label=f" (tangent load case {k}{m})")
            loads[kl] = self._b.array_r
            solutions[kl] = self._dw.array_r
        self._selector.value[:] = 0.0
        # <A_ijmn d_n (dw_kl)_m> |Y| = int E_ij : A : grad(dw_kl) = -b_ij . x_kl.
        A = (A_mean - loads @ solutions.T) / volume  # not symmetrised: a check for callers
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
        self.fluctuation.x.array[:] = 0.0
        self._converged_w[:] = 0.0
        self._converged_H = None
        self._result = None
        self.macro_gradient.value[:] = 0.0

    @property
    def num_dofs(self) -> int:
        """Number of degrees of freedom of the fluctuation space (before constraints)."""
        return self.V.dofmap.index_map.size_global * self.V.dofmap.index_map_bs

    def destroy(self) -> None:
        """Free the PETSc objects of this cell."""
        self.solver.destroy()
        if self._fallback is not None:
            self._fallback.destroy()
        self._b.destroy()
        self._dw.destroy()


class _Failed(Exception):
    """One Newton start failed (internal; turned into a :class:`CellSolveError`)."""
