# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # FE² with molecular dynamics: a Lennard-Jones crystal bar in tension
#
# A 2D bar is cut from a triangular Lennard-Jones crystal (LJ units, cutoff 2.5, at its
# zero-pressure lattice constant) and stretched along $x$ by up to 8 %, free to contract
# along $y$. Nobody wrote its stress–strain law: at every macro quadrature point a periodic
# box of atoms in LAMMPS is deformed by the macro $F = I + \nabla u$, relaxed, and its virial
# stress returned as the first Piola–Kirchhoff stress $P$; the tangent comes by central
# differences through the seam (`FiniteDifferenceTangent`). The deformation is homogeneous,
# so the dispatcher's state resolution (`state_tolerance`) lets all points share one MD
# solve per Newton iterate.
#
# **Self-checks.**
# * Cauchy–Born: for a simple lattice at T = 0 the relaxed box is the Cauchy–Born crystal,
#   so the macro $P_{xx}$ and lateral stretch must equal those of a NumPy lattice sum of
#   the same potential (uniaxial stress: $P_{yy} = 0$ solved by Newton on the sum).
# * Linear limit: at a stretch of $10^{-5}$, $P_{xx} = E^* \varepsilon$ with
#   $E^* = C_{11} - C_{12}^2/C_{22}$ from the MD box's own small-strain constants.
# * Softening: the secant modulus at the largest stretch is well below $E^*$.
#
# Run: `hmm-fem demo md_bar` or `python3 demos/demo_md_bar.py`.

# +
import argparse
import sys
from pathlib import Path

import numpy as np
from dolfinx import mesh
from mpi4py import MPI

from hmm_fem.macro import StaticElasticity
from hmm_fem.micro import FiniteDifferenceTangent
from hmm_fem.micro.md import MDStressModel
from hmm_fem.micro.md import lattice_sum as ls

parser = argparse.ArgumentParser(description="FE2 with MD boxes: a Lennard-Jones bar in tension")
parser.add_argument("--quick", action="store_true", help="coarse mesh, fewer steps (tests)")
parser.add_argument("--output", default="results/md_bar", help="output folder")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
output = Path(args.output)

cutoff = 2.5
potential = ls.lennard_jones(cutoff=cutoff)  # lj/cut with an energy shift: same stress
a0 = ls.zero_pressure_lattice_constant("hex", potential, (1.05, 1.15))
length = 4.0
strains = [1e-5, 0.02, 0.04, 0.06] if args.quick else [1e-5, 0.01, 0.02, 0.03, 0.04, 0.05,
                                                       0.06, 0.07, 0.08]
# -

# ## The micro model: a LAMMPS box per rank

# +
md = MDStressModel(
    "hex", lattice_constant=a0, zero_pressure=True, pair_style=f"lj/cut {cutoff}",
    pair_coeff="* * 1.0 1.0", pair_modify="shift yes",
)
say(f"MD box: {md.box.num_atoms} atoms, lattice constant {md.lattice_constant:.12f} "
    f"(lattice sum: {a0:.12f})")
# -

# ## The macro problem

# +
bar = mesh.create_rectangle(
    comm, [[0.0, 0.0], [length, 1.0]], [4, 1] if args.quick else [16, 4]
)
problem = StaticElasticity(
    bar,
    md.with_tangent(),
    dirichlet=[
        (lambda x: np.isclose(x[0], 0.0), 0.0, 0),
        (lambda x: np.isclose(x[1], 0.0), 0.0, 1),
        (lambda x: np.isclose(x[0], length), strains[-1] * length, 0),
    ],
    quadrature_degree=1,
    # states rounded to 1e-12 (far below accuracy): the homogeneous bar's points share one
    # solve; the rounding puts a floor of about C * 1e-12 under the residual
    state_tolerance=1e-12,
    petsc_options={"snes_rtol": 1e-9, "snes_atol": 1e-10},
)
curve = []
for eps in strains:
    report = problem.solve(steps=1, load=eps / strains[-1])
    P = problem.coupling.cell_averages("value")
    P_xx = comm.allreduce(P[:, 0, 0].sum(), op=MPI.SUM) / comm.allreduce(len(P), op=MPI.SUM)
    spread = comm.allreduce(np.ptp(P[:, 0, 0]) if len(P) else 0.0, op=MPI.MAX)
    uy = problem.u.x.array.reshape(-1, 2)[:, 1]
    lateral = comm.allreduce(uy.min() if len(uy) else 0.0, op=MPI.MIN)
    curve.append((eps, P_xx, 1.0 + lateral, spread))
    say(f"stretch {eps:7.4f}: P_xx = {P_xx:.10f}, lateral stretch {1 + lateral:.8f}; {report}")
curve = np.array(curve)
md_solves = comm.allreduce(md.solves, op=MPI.SUM)
stats = problem.coupling.dispatcher.statistics.total(comm)
# -

# ## References: the Cauchy–Born lattice sum and the linear law from the MD box


# +
def cauchy_born_uniaxial(eps):
    """P_xx and the lateral stretch of the lattice sum under uniaxial stress."""
    lam = 1.0
    for _ in range(50):
        F = np.diag([1.0 + eps, lam])
        step = -ls.first_piola_stress(F, "hex", a0, potential)[1, 1] / ls.tangent(
            F, "hex", a0, potential
        )[1, 1, 1, 1]
        lam += step
        if abs(step) < 1e-15:
            break
    return ls.first_piola_stress(np.diag([1.0 + eps, lam]), "hex", a0, potential)[0, 0], lam


reference = np.array([cauchy_born_uniaxial(e) for e in curve[:, 0]])
small = MDStressModel("hex", lattice_constant=md.lattice_constant, kinematics="small",
                      pair_style=f"lj/cut {cutoff}")
C = FiniteDifferenceTangent(small).evaluate({"strain": np.zeros((1, 3))}).derivatives["strain"][0]
small.close()
E_star = C[0, 0] - C[0, 1] ** 2 / C[1, 1]
say(f"MD small-strain constants: C11 = {C[0, 0]:.6f}, C12 = {C[0, 1]:.6f}, C22 = {C[1, 1]:.6f}, "
    f"C66 = {C[2, 2]:.6f}; E* = {E_star:.6f}")
cb_error = np.abs(curve[:, 1] - reference[:, 0]).max() / np.abs(reference[:, 0]).max()
lateral_error = np.abs(curve[:, 2] - reference[:, 1]).max()
linear_error = abs(curve[0, 1] / (E_star * curve[0, 0]) - 1)
secant = curve[-1, 1] / curve[-1, 0]
checks = {
    f"FE² P_xx = Cauchy–Born lattice sum at every stretch (max rel. error {cb_error:.1e} "
    "< 1e-7)": cb_error < 1e-7,
    f"FE² lateral stretch = Cauchy–Born (max error {lateral_error:.1e} < 1e-7)": lateral_error
    < 1e-7,
    f"homogeneous: P_xx equal at all points (spread {curve[:, 3].max():.1e} < 1e-8)": curve[
        :, 3
    ].max()
    < 1e-8,
    f"linear limit: P_xx / (E* eps) - 1 = {linear_error:.1e} at eps = 1e-5 (< 1e-3)": linear_error
    < 1e-3,
    f"softening: secant modulus {secant:.3f} at {curve[-1, 0]:.0%} < 0.85 E* = "
    f"{0.85 * E_star:.3f}": secant < 0.85 * E_star,
    f"C12 = C66 (Cauchy relation, 2D): {C[0, 1]:.6f} vs {C[2, 2]:.6f}": abs(C[0, 1] - C[2, 2])
    < 1e-6 * C[0, 0],
    f"cache: {stats.micro_solves} distinct states in {stats.calls} evaluations of "
    f"{stats.point_evaluations} points; {md_solves} MD solves (value + 8 central "
    "differences each)": md_solves == 9 * stats.micro_solves
    and stats.micro_solves <= 2 * stats.calls,
}
for text, ok in checks.items():
    say(f"  [{'ok' if ok else 'FAILED'}] {text}")
# -

# ## Output for ParaView, and the stress–strain curve

# +
for kind, path in problem.write(output / "bar").items():
    say(f"wrote {kind:<12} {path}")
if comm.rank == 0:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = np.linspace(0.0, 0.085, 120)
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    axis.plot(dense, [cauchy_born_uniaxial(e)[0] for e in dense], "k-",
              label="Cauchy–Born lattice sum (NumPy)")
    axis.plot(dense, E_star * dense, "k:", label="linear, $E^*$ from the MD box")
    axis.plot(curve[:, 0], curve[:, 1], "o", color="tab:red", label="FE² with LAMMPS boxes")
    axis.set_xlabel("macro stretch ε = u_x(L) / L")
    axis.set_ylabel("macro stress $P_{xx}$ (LJ units)")
    axis.set_title("2D LJ crystal bar in uniaxial tension")
    axis.set_ylim(bottom=0.0)
    axis.legend()
    output.mkdir(parents=True, exist_ok=True)
    figure.savefig(output / "md_bar.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    say(f"wrote picture      {output / 'md_bar.png'}")
md.close()
if not all(checks.values()):
    sys.exit("demo_md_bar: a check FAILED")
say("demo_md_bar: all checks passed")
# -
