"""The same periodic cell problems, written with SfePy (for benchmarks/peers.py).

SfePy is not a dependency of hmm-fem: :func:`ensure_sfepy` installs it on demand from PyPI
into a folder of its own and puts that folder at the end of ``sys.path`` (so the
environment's NumPy, SciPy and the rest win). The cells below are written the way SfePy's
own examples and documentation write such problems (interactive API: ``FEDomain``,
``Field``, ``Term.new``, ``PeriodicBC`` with its node-matching functions, ``Newton`` over
``ScipyDirect`` with the factorisation kept between right-hand sides).

Both cells solve the textbook corrector problems on the mesh exported from an hmm-fem
:class:`~hmm_fem.geometry.UnitCell` (a MEDIT ``.mesh`` file, phase tags as cell groups),
with the corrector fixed at the corners (SfePy's homogenisation examples do the same):

- conductivity: ``div K (e_j + grad chi_j) = 0``, ``K*_ij = <K (e_j + grad chi_j)>_i``;
- elasticity (plane strain): ``div C (E_l + eps(w_l)) = 0``,
  ``C*_kl = <C (E_l + eps(w_l))>_k`` in the Voigt convention of :mod:`hmm_fem.voigt`
  (SfePy's 2D convention is the same: order 11, 22, 12, engineering shear).
"""

import functools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SFEPY_VERSION = "2026.3"


def ensure_sfepy(folder: Path) -> str:
    """Import SfePy from ``folder``, installing it there first if needed; returns its version.

    ``pip install --no-deps``: SfePy needs matplotlib, meshio, numpy, pyparsing, pyvista,
    scipy, sympy and packaging, all in the hmm-fem environment, and PyTables, which it
    imports only for its HDF5 output (not used here). There is no wheel for Python 3.14,
    so pip compiles it (5 to 9 minutes on a 2-core machine, once).
    """
    folder = Path(folder).expanduser()
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    try:
        import sfepy
    except ImportError:
        print(f"installing SfePy {SFEPY_VERSION} from PyPI into {folder} (compiles; minutes)")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
             "--target", str(folder), f"sfepy=={SFEPY_VERSION}"],
            check=True,
        )  # fmt: skip
        print(f"  installed in {time.perf_counter() - start:.0f} s")
        import sfepy
    return sfepy.__version__


def write_medit(cell, path: Path) -> Path:
    """Write the triangles of a 2D unit cell, with phase tags, as a MEDIT ``.mesh`` file."""
    mesh = cell.mesh
    if cell.dim != 2:
        raise ValueError("write_medit: only 2D cells are exported here")
    x = mesh.geometry.x[:, :2]
    cells = mesh.geometry.dofmap  # the geometry's own vertex numbering (P1 geometry)
    tags = np.zeros(len(cells), dtype=np.int64)
    tags[cell.cell_tags.indices] = cell.cell_tags.values
    lines = ["MeshVersionFormatted 1", "Dimension 2", "Vertices", str(len(x))]
    lines += [f"{a:.17g} {b:.17g} 0" for a, b in x]
    lines += ["Triangles", str(len(cells))]
    lines += [f"{i + 1} {j + 1} {k + 1} {t}" for (i, j, k), t in zip(cells, tags)]
    lines.append("End")
    path.write_text("\n".join(lines) + "\n")
    return path


class _PeriodicCell:
    """Domain, regions, periodic conditions and solver of a SfePy cell on ``[0, L]^2``."""

    def __init__(self, mesh_file, phases, degree, shape):
        from sfepy.discrete import FieldVariable, Function, Functions, Integral
        from sfepy.discrete.conditions import Conditions, EssentialBC, PeriodicBC
        from sfepy.discrete.fem import FEDomain, Field, Mesh
        from sfepy.discrete.fem.periodic import match_x_line, match_y_line
        from sfepy.solvers.ls import ScipyDirect
        from sfepy.solvers.nls import Newton

        mesh = Mesh.from_file(str(mesh_file))
        self.domain = FEDomain("cell", mesh)
        lo, hi = self.domain.get_mesh_bounding_box()
        self.volume = float(np.prod(hi - lo))
        eps = 1e-8 * float(np.max(hi - lo))
        create = self.domain.create_region
        self.omega = create("Omega", "all")
        self.phases = {tag: create(f"Y{tag}", f"cells of group {tag}") for tag in phases}
        sides = {
            "Left": f"vertices in (x < {lo[0] + eps:.17g})",
            "Right": f"vertices in (x > {hi[0] - eps:.17g})",
            "Bottom": f"vertices in (y < {lo[1] + eps:.17g})",
            "Top": f"vertices in (y > {hi[1] - eps:.17g})",
        }
        regions = {name: create(name, select, "facet") for name, select in sides.items()}
        corners = create(
            "Corners",
            " +v ".join(f"(r.{a} *v r.{b})" for a in ("Left", "Right") for b in ("Bottom", "Top")),
            "vertex",
        )
        field = Field.from_args("corrector", np.float64, shape, self.omega, approx_order=degree)
        self.u = FieldVariable("u", "unknown", field)
        self.v = FieldVariable("v", "test", field, primary_var_name="u")
        self.integral = Integral("i", order=2 * degree)
        self.order = 2 * degree  # evaluate() names integrals by their order
        # get_saved=False: SfePy caches a match keyed only by the number of nodes matched
        # (periodic_cache in sfepy.discrete.fem.periodic), so a second cell whose side has
        # as many nodes silently reused the first cell's permutation (P2 answers off by up
        # to 2e-4 in this benchmark before this).
        self.functions = Functions(
            [
                Function("match_x_line", functools.partial(match_x_line, get_saved=False)),
                Function("match_y_line", functools.partial(match_y_line, get_saved=False)),
            ]
        )
        self.epbcs = Conditions(
            [
                PeriodicBC("px", [regions["Left"], regions["Right"]], {"u.all": "u.all"},
                           match="match_y_line"),
                PeriodicBC("py", [regions["Bottom"], regions["Top"]], {"u.all": "u.all"},
                           match="match_x_line"),
            ]
        )  # fmt: skip
        self.ebcs = Conditions([EssentialBC("fix", corners, {"u.all": 0.0})])
        self.solver = Newton(
            {"i_max": 1, "eps_a": 1e-9, "eps_r": 1e-12, "is_linear": True},
            lin_solver=ScipyDirect({"use_presolve": True}),
        )
        self.num_dofs = field.n_nod * (1 if shape == "scalar" else 2)

    def _problem(self, lhs, rhs):
        from sfepy.discrete import Equation, Equations, Problem

        problem = Problem(
            "cell", equations=Equations([Equation("corrector", lhs + rhs)]),
            functions=self.functions,
        )  # fmt: skip
        problem.set_bcs(ebcs=self.ebcs, epbcs=self.epbcs)
        problem.set_solver(self.solver)
        return problem

    def _evaluable(self, expression):
        """Parse ``expression`` once; :meth:`_evaluate` then only integrates (SfePy's idiom
        for repeated evaluation: ``Problem.evaluate`` parses the expression at every call)."""
        zero = np.zeros(self.num_dofs)
        return self.problem.create_evaluable(
            expression, mode="eval", copy_materials=False, u=zero, m=self.material
        )

    def _evaluate(self, evaluable, state):
        from sfepy.discrete.evaluate import eval_equations

        equations, variables = evaluable
        variables["u"].set_data(state)
        self.material.time_update(None, equations, mode="force", problem=self.problem)
        return np.asarray(eval_equations(equations, variables, mode="eval"))

    def _solve(self, problem):
        from sfepy.base.base import output

        output.set_output(quiet=True)
        state = problem.solve(save_results=False, verbose=False)
        return state


class SfepyConductivityCell(_PeriodicCell):
    """K* of a 2D cell with isotropic phases: ``phases = {tag: k}``."""

    def __init__(self, mesh_file, phases, degree=1):
        super().__init__(mesh_file, phases, degree, "scalar")
        from sfepy.discrete import Material
        from sfepy.terms import Term

        self.tags = sorted(phases)
        self.material = Material("m", values=self._values(phases, 0))
        m, u, v, i = self.material, self.u, self.v, self.integral
        lhs = sum(
            (Term.new(f"dw_diffusion(m.K{t}, v, u)", i, self.phases[t], m=m, v=v, u=u)
             for t in self.tags[1:]),
            Term.new(f"dw_diffusion(m.K{self.tags[0]}, v, u)", i, self.phases[self.tags[0]],
                     m=m, v=v, u=u),
        )  # fmt: skip
        rhs = sum(
            (Term.new(f"dw_diffusion_r(m.G{t}, v)", i, self.phases[t], m=m, v=v)
             for t in self.tags[1:]),
            Term.new(f"dw_diffusion_r(m.G{self.tags[0]}, v)", i, self.phases[self.tags[0]],
                     m=m, v=v),
        )  # fmt: skip
        self.problem = self._problem(lhs, rhs)
        self.k = dict(phases)
        o = self.order
        self._means = {
            t: self._evaluable(f"ev_integrate_mat.{o}.Y{t}(m.K{t}, u)") for t in self.tags
        }
        self._velocities = {
            t: self._evaluable(f"ev_diffusion_velocity.{o}.Y{t}(m.K{t}, u)") for t in self.tags
        }

    def _values(self, phases, j):
        values = {}
        for t, k in phases.items():
            values[f"K{t}"] = k * np.eye(2)
            values[f"G{t}"] = (k * np.eye(2)[:, j]).reshape(2, 1)
        return values

    def effective_tensor(self, phases=None):
        """K* (2 x 2); new phase values reassemble and refactorise."""
        from sfepy.discrete.functions import ConstantFunction

        if phases is not None:
            self.k = dict(phases)
        K = np.zeros((2, 2))
        for j in range(2):
            self.material.set_function(ConstantFunction(self._values(self.k, j), no_tile=True))
            state = self._solve(self.problem)
            chi = state.get_state_parts()["u"]
            for t in self.tags:
                # <K (e_j + grad chi_j)>: int K e_j - (-int K grad chi_j), SfePy's velocity
                # being -K grad chi.
                mean = self._evaluate(self._means[t], chi).reshape(2, 2)[:, j]
                K[:, j] += mean - np.ravel(self._evaluate(self._velocities[t], chi))
        K /= self.volume
        return K


class SfepyElasticityCell(_PeriodicCell):
    """Plane-strain C* (3 x 3 Voigt) of a 2D cell: ``phases = {tag: (E, nu)}``."""

    def __init__(self, mesh_file, phases, degree=1):
        super().__init__(mesh_file, phases, degree, "vector")
        from sfepy.discrete import Material
        from sfepy.terms import Term

        self.tags = sorted(phases)
        self.moduli = dict(phases)
        self.material = Material("m", values=self._values(self.moduli, 0))
        m, u, v, i = self.material, self.u, self.v, self.integral
        terms = [
            Term.new(f"dw_lin_elastic(m.D{t}, v, u)", i, self.phases[t], m=m, v=v, u=u)
            for t in self.tags
        ]
        loads = [
            Term.new(f"dw_lin_prestress(m.S{t}, v)", i, self.phases[t], m=m, v=v)
            for t in self.tags
        ]
        self.problem = self._problem(sum(terms[1:], terms[0]), sum(loads[1:], loads[0]))
        o = self.order
        self._means = {
            t: self._evaluable(f"ev_integrate_mat.{o}.Y{t}(m.D{t}, u)") for t in self.tags
        }
        self._stresses = {
            t: self._evaluable(f"ev_cauchy_stress.{o}.Y{t}(m.D{t}, u)") for t in self.tags
        }

    @staticmethod
    def _values(moduli, load):
        from sfepy.mechanics.matcoefs import stiffness_from_youngpoisson

        values = {}
        for t, (E, nu) in moduli.items():
            D = stiffness_from_youngpoisson(2, E, nu, plane="strain")
            values[f"D{t}"] = D
            values[f"S{t}"] = D[:, load].reshape(3, 1)  # the stress of the unit macro strain
        return values

    def effective_tensor(self, phases=None):
        """C* (3 x 3, Voigt, engineering shear); new moduli reassemble and refactorise."""
        from sfepy.discrete.functions import ConstantFunction

        if phases is not None:
            self.moduli = dict(phases)
        C = np.zeros((3, 3))
        for load in range(3):
            self.material.set_function(
                ConstantFunction(self._values(self.moduli, load), no_tile=True)
            )
            state = self._solve(self.problem)
            w = state.get_state_parts()["u"]
            for t in self.tags:
                mean = self._evaluate(self._means[t], w).reshape(3, 3)[:, load]
                C[:, load] += mean + np.ravel(self._evaluate(self._stresses[t], w))
        return C / self.volume
