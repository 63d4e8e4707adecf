"""Benchmark: the three 3D cells (Stokes, elasticity, conductivity), cold and warm, with accuracy.

(1) Stokes: the simple cubic array of spheres at solid fraction 0.216, default mesh, P2-P1,
    the default solver (MINRES, block preconditioner: GAMG per velocity component, lumped
    pressure mass). k against Zick & Homsy (1982), Table 2 (K = 7.442, k = 2 a^2/(9 c K)).
    cold: meshing, pore submesh, form compilation (in an empty JIT cache unless
    --keep-jit-cache), periodic constraint, assembly and solve of the 3 load cases.
    warm: the same cell evaluated again from zero initial guesses (preconditioner set-up
    and solve).
(2) Elasticity, P2, periodic: spheres at f = 0.3 on a mesh of about 3.1e4 dofs
    (mesh_size 0.2), the default solver (CG + GAMG, rigid body near-nullspace). The phases
    have equal shear moduli, so C* is known exactly (Hill 1963: isotropic, shear modulus G,
    1/(K* + 4G/3) = sum c_i/(K_i + 4G/3)); conforming P2 overestimates it. cold: meshing,
    build and the 6 load cases; warm: new phase values (another inclusion Poisson ratio),
    warm-started from the last solutions. With --direct the same cell is also solved by
    CHOLMOD (the previous default; slow) and the agreement of C* printed.
(3) Conductivity: spheres at f = 0.4, contrast 10, default mesh: P1 (the default, direct)
    and P2 (CG + GAMG). Reference K* = 2.36447: P2 on meshes 0.1, 0.07, 0.05 (2.35975,
    2.36210, 2.36323, meshed fractions 0.39914, 0.39958, 0.39978) extrapolated linearly in
    the meshed volume deficit to the exact sphere (slopes 5.34 and 5.65 per unit fraction;
    the two last points give 2.36447, the two first 2.36434).

Peak memory (ru_maxrss) is printed after each part. Wall times on the shared 2-core
machine depend on its load: the load average is printed with them, and so is the CPU time
of this process and its children (the JIT's compiler; everything is serial), which a
loaded machine inflates much less. The last line is
``stokes 3d cold: X.X s``. Run: ``docker/run python3 benchmarks/cells_3d.py [--direct]``.
"""

import argparse
import atexit
import math
import os
import resource
import shutil
import tempfile
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--keep-jit-cache", action="store_true", help="do not use an empty JIT cache")
parser.add_argument("--direct", action="store_true", help="also solve elasticity directly (slow)")
parser.add_argument("--quick", action="store_true", help="coarse meshes (a smoke test)")
args = parser.parse_args()

if not args.keep_jit_cache:
    jit_cache = tempfile.mkdtemp(prefix="hmm-fem-bench-jit-")
    os.environ["XDG_CACHE_HOME"] = jit_cache
    atexit.register(shutil.rmtree, jit_cache, ignore_errors=True)

import numpy as np  # noqa: E402

from hmm_fem import cells, voigt  # noqa: E402
from hmm_fem.cells import DEFAULT_SOLVER_OPTIONS  # noqa: E402

ZICK_HOMSY_0216 = 7.442
K_REFERENCE_CUBIC_04 = 2.36447


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the JIT's C compiler)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Clock:
    """Wall and CPU time since construction."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def __call__(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


stokes_h = 0.3 if args.quick else None
elastic_h = 0.4 if args.quick else 0.2
conductivity_h = 0.3 if args.quick else None

# (1) Stokes ---------------------------------------------------------------------------------
c = 0.216
print(f"(1) Stokes, simple cubic spheres c = {c}, default mesh  [{load()}]", flush=True)
clock = Clock()
cell = cells.cubic(c, mesh_size=stokes_h)
t_mesh = clock()[0]
stokes = cells.PermeabilityCell(cell)
k = stokes.permeability()
t_stokes_cold, cpu_stokes_cold = clock()
a = (3 * c / (4 * math.pi)) ** (1 / 3)
k_zh = 2 * a**2 / (9 * c * ZICK_HOMSY_0216)
diag = np.diag(k)
print(
    f"    {stokes.num_dofs} dofs (P2-P1), iterations {stokes.solver.iterations}, meshed solid "
    f"fraction {1 - stokes.porosity:.5f}"
)
print(
    f"    k = {diag.mean():.6e} (diagonal spread {np.ptp(diag) / diag.mean():.1e}); "
    f"Zick & Homsy {k_zh:.6e}: {diag.mean() / k_zh - 1:+.3%}"
)
for w in stokes.solutions:
    w.x.array[:] = 0.0
stokes._forget()
clock = Clock()
k_warm = stokes.permeability()
t_stokes_warm, cpu_stokes_warm = clock()
print(
    f"    cold {t_stokes_cold:.1f} s (CPU {cpu_stokes_cold:.1f} s; meshing {t_mesh:.1f} s), "
    f"warm {t_stokes_warm:.1f} s (CPU {cpu_stokes_warm:.1f} s); "
    f"warm k - cold k: {np.abs(k_warm - k).max() / diag.mean():.1e}; peak {peak_mb():.0f} MB  "
    f"[{load()}]",
    flush=True,
)
stokes.destroy()

# (2) Elasticity -------------------------------------------------------------------------------
print(f"(2) Elasticity P2, cubic spheres f = 0.3, mesh_size {elastic_h}  [{load()}]", flush=True)
G = 1.0


def phases(nu_inclusion):
    return {"matrix": (2 * G * 1.3, 0.3), "inclusion": (2 * G * (1 + nu_inclusion), nu_inclusion)}


def hill(cell, nu_inclusion):
    fractions = cell.phase_volume_fractions()
    conc = np.array([fractions["matrix"], fractions["inclusion"]])
    bulk = np.array([voigt.lame(2 * G * (1 + nu), nu)[0] + 2 * G / 3 for nu in (0.3, nu_inclusion)])
    K = 1 / np.sum(conc / (bulk + 4 * G / 3)) - 4 * G / 3
    exact = np.diag([2 * G] * 3 + [G] * 3)
    exact[:3, :3] += K - 2 * G / 3
    return exact


clock = Clock()
cube = cells.cubic(0.3, mesh_size=elastic_h)
elastic = cells.ElasticityCell(cube, phases(0.45), degree=2)
solve_clock = Clock()
C = elastic.effective_tensor()
t_el_solve, cpu_el_solve = solve_clock()  # preconditioner set-up and the 6 load cases
t_el_cold, cpu_el_cold = clock()
cold_its = list(elastic.solver.iterations)
clock = Clock()
C2 = elastic.effective_tensor(phases(0.4))
t_el_warm, cpu_el_warm = clock()


def error(C, exact):
    return np.abs(C - exact).max() / np.abs(exact).max()


print(f"    {elastic.num_dofs} dofs, iterations cold {cold_its}, warm {elastic.solver.iterations}")
print(
    f"    C* against Hill (exact): {error(C, hill(cube, 0.45)):.2e} (cold), "
    f"{error(C2, hill(cube, 0.4)):.2e} (warm)"
)
print(
    f"    cold {t_el_cold:.2f} s (CPU {cpu_el_cold:.2f} s); set-up and 6 load cases alone "
    f"{t_el_solve:.2f} s (CPU {cpu_el_solve:.2f} s); warm {t_el_warm:.2f} s (CPU "
    f"{cpu_el_warm:.2f} s); peak {peak_mb():.0f} MB  [{load()}]",
    flush=True,
)
if args.direct:
    direct = cells.ElasticityCell(cube, phases(0.4), degree=2, petsc_options=DEFAULT_SOLVER_OPTIONS)
    clock = Clock()
    C_direct = direct.effective_tensor()
    t_direct, cpu_direct = clock()
    print(
        f"    direct (CHOLMOD) {t_direct:.2f} s (CPU {cpu_direct:.2f} s); AMG - direct: "
        f"{error(C2, C_direct):.1e}; "
        f"peak {peak_mb():.0f} MB  [{load()}]",
        flush=True,
    )
    direct.destroy()
elastic.destroy()

# (3) Conductivity -----------------------------------------------------------------------------
print(f"(3) Conductivity, cubic spheres f = 0.4, contrast 10, default mesh  [{load()}]", flush=True)
clock = Clock()
sphere = cells.cubic(0.4, mesh_size=conductivity_h)
t_mesh = clock()[0]
for degree in (1, 2):
    clock = Clock()
    problem = cells.ConductivityCell(sphere, {"matrix": 1.0, "inclusion": 10.0}, degree=degree)
    K = problem.effective_tensor()
    t_cold, cpu_cold = clock()
    clock = Clock()
    problem.effective_tensor({"matrix": 1.0, "inclusion": 11.0})
    t_warm, cpu_warm = clock()
    K_mean = np.trace(K) / 3
    print(
        f"    P{degree}: {problem.num_dofs} dofs, K* = {K_mean:.5f}, against "
        f"{K_REFERENCE_CUBIC_04}:"
        f" {K_mean / K_REFERENCE_CUBIC_04 - 1:+.2%}; cold {t_cold:.2f} s (CPU {cpu_cold:.2f} s;"
        f" + meshing {t_mesh:.1f} s), warm {t_warm:.2f} s (CPU {cpu_warm:.2f} s); peak "
        f"{peak_mb():.0f} MB  [{load()}]",
        flush=True,
    )
    problem.destroy()

print(f"stokes 3d cold: {t_stokes_cold:.1f} s")
