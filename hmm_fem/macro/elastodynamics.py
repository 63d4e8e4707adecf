"""Macro elastodynamics with a homogenised stiffness: implicit Newmark time stepping.

``rho u'' - div(C* eps(u)) = f`` with the constant effective stiffness ``C*`` (Voigt,
see :mod:`hmm_fem.voigt`; 2D is plane strain) and the effective density. The
average-acceleration Newmark scheme (beta = 1/4, gamma = 1/2) is unconditionally
stable and conserves energy; the system matrix ``4 rho/dt^2 M + K`` is assembled and
factorised once, each step is one right-hand side.
"""

from __future__ import annotations

from collections.abc import Callable

import dolfinx.fem.petsc
import numpy as np
import ufl
from dolfinx import fem
from petsc4py import PETSc

from ..voigt import ufl_strain, ufl_stress_tensor, voigt_size

__all__ = ["LinearElastodynamics"]


class LinearElastodynamics:
    """Implicit Newmark (average acceleration) for ``rho u'' = div(C eps(u)) + f``.

    Args:
        mesh: The macro mesh.
        stiffness: Constant Voigt stiffness (e.g. C* of a cell), ``3x3`` or ``6x6``.
        density: Effective density.
        dt: Time step.
        force: ``force(t) -> UFL vector expression`` of the body force (may use a
            ``fem.Constant`` it updates), or ``None``.
        degree: Lagrange degree of the displacement.
        clamped: Marker ``x -> bool`` of a clamped boundary (default: none, free
            boundaries).
        petsc_options_prefix: Options prefix of the linear solver.
    """

    def __init__(
        self,
        mesh,
        stiffness,
        density: float,
        dt: float,
        force: Callable[[float], object] | None = None,
        degree: int = 1,
        clamped=None,
        petsc_options_prefix: str = "hmm_newmark_",
    ):
        dim = mesh.geometry.dim
        C = np.asarray(stiffness, dtype=np.float64)
        if C.shape != (voigt_size(dim),) * 2:
            raise ValueError(
                f"a {dim}D stiffness must be {voigt_size(dim)}x{voigt_size(dim)} "
                f"(Voigt), got {C.shape}"
            )
        if not np.allclose(C, C.T) or np.linalg.eigvalsh(C).min() <= 0:
            raise ValueError("the stiffness must be symmetric positive definite")
        if not density > 0 or not dt > 0:
            raise ValueError(f"density and dt must be positive, got {density}, {dt}")
        self.mesh, self.dim, self.dt, self.time = mesh, dim, float(dt), 0.0
        self.V = fem.functionspace(mesh, ("Lagrange", degree, (dim,)))
        self.u = fem.Function(self.V, name="displacement")
        self.v = fem.Function(self.V, name="velocity")
        self.a = fem.Function(self.V, name="acceleration")
        self.t = fem.Constant(mesh, 0.0)
        Cc = fem.Constant(mesh, C)
        trial, test = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        sigma = ufl_stress_tensor(Cc * ufl_strain(trial), dim)
        k = 4.0 * density / self.dt**2
        self._lhs = fem.form(
            k * ufl.inner(trial, test) * ufl.dx + ufl.inner(sigma, ufl.sym(ufl.grad(test))) * ufl.dx
        )
        history = k * self.u + 4.0 * density / self.dt * self.v + density * self.a
        rhs = ufl.inner(history, test) * ufl.dx
        self._force = force
        if force is not None:
            rhs += ufl.inner(force(self.t), test) * ufl.dx
        self._rhs = fem.form(rhs)
        self.bcs = []
        if clamped is not None:
            from dolfinx import mesh as dmesh

            facets = dmesh.locate_entities_boundary(mesh, dim - 1, clamped)
            dofs = fem.locate_dofs_topological(self.V, dim - 1, facets)
            self.bcs.append(fem.dirichletbc(np.zeros(dim), dofs, self.V))
        self.A = dolfinx.fem.petsc.assemble_matrix(self._lhs, bcs=self.bcs)
        self.A.assemble()
        self.b = dolfinx.fem.petsc.create_vector(self.V)
        self.ksp = PETSc.KSP().create(mesh.comm)
        self.ksp.setOptionsPrefix(petsc_options_prefix)
        self.ksp.setOperators(self.A)
        self.ksp.setType("preonly")
        self.ksp.getPC().setType("lu")
        self.ksp.getPC().setFactorSolverType("mumps")
        self.ksp.setFromOptions()
        self._u_new = fem.Function(self.V)

    def step(self) -> None:
        """Advance one time step (one right-hand side on the kept factorisation)."""
        dt = self.dt
        self.t.value = self.time + dt
        with self.b.localForm() as local:
            local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(self.b, self._rhs)
        dolfinx.fem.petsc.apply_lifting(self.b, [self._lhs], [self.bcs])
        self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        dolfinx.fem.petsc.set_bc(self.b, self.bcs)
        self.ksp.solve(self.b, self._u_new.x.petsc_vec)
        if self.ksp.getConvergedReason() < 0:
            raise RuntimeError(f"Newmark step at t = {self.time + dt}: linear solve failed")
        self._u_new.x.scatter_forward()
        u_new, u, v, a = (f.x.array for f in (self._u_new, self.u, self.v, self.a))
        a_new = 4.0 / dt**2 * (u_new - u) - 4.0 / dt * v - a
        v[:] = v + 0.5 * dt * (a + a_new)
        a[:] = a_new
        u[:] = u_new
        self.time += dt

    def destroy(self) -> None:
        """Free the PETSc objects."""
        self.ksp.destroy()
        self.A.destroy()
        self.b.destroy()
