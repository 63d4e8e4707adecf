# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # FE² plasticity: a perforated plate loaded past its limit and unloaded
#
# A plate in plane strain is made of a perforated metal: a square array of holes
# (porosity $f = 0.2$, hole radius $r = \sqrt{f/\pi}$) in a von Mises matrix without
# hardening (yield stress $\sigma_y$). It is pulled along $y$ past its limit load and
# unloaded. Nobody wrote the macroscopic law of this material: at every macro point a
# periodic cell with the hole is solved (its own Newton iteration, radial return at its
# quadrature points), starting from the internal variables the point committed at the
# last converged load step, and returns the average stress and the consistent tangent.
# A cut load step would roll the internal variables back.
#
# **Self-checks.**
# - *Limit load.* For the one-phase (unperforated) plate the plane-strain limit stress is
#   $\frac{2}{\sqrt 3}\sigma_y$. Limit analysis of the perforated cell bounds its limit
#   stress: the strips between the columns of holes carry a statically admissible field
#   (lower bound $(1 - 2r)\frac{2}{\sqrt 3}\sigma_y$), and a uniform plastic strain rate in
#   the matrix is kinematically admissible (upper bound $(1 - f)\frac{2}{\sqrt 3}\sigma_y$).
#   The peak macro stress must lie between them.
# - *Self-equilibrated residual stresses.* Unloaded to zero load, the plate keeps a
#   permanent set, and residual stresses whose resultants vanish: the mean macro stresses
#   $\bar\Sigma_{yy}$ (the reaction force per width) and $\bar\Sigma_{xx}$ (free right
#   edge) are zero, while the cell holds micro residual stresses of the order of
#   $\sigma_y$ whose average is the (small) local macro stress.
#
# The macro state is homogeneous only up to the cell's numerical anisotropy: the
# unstructured cell mesh couples normal and shear response at the 1e-5 level, which
# plastic flow without hardening amplifies, so the macro plate shears slightly. The
# checks use the mean stresses, which equilibrium fixes exactly.
#
# Run: `hmm-fem demo fe2_plasticity` or `python3 demos/demo_fe2_plasticity.py`.

# +
import argparse
import sys
from pathlib import Path

import numpy as np
from dolfinx import mesh
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.io import write_vtx
from hmm_fem.macro import StaticElasticity
from hmm_fem.materials import J2Plasticity
from hmm_fem.micro import PlasticityModel

parser = argparse.ArgumentParser(description="FE2 plasticity demo: a perforated plate")
parser.add_argument("--quick", action="store_true", help="coarse cell, fewer steps (tests)")
parser.add_argument("--output", default="results/fe2_plasticity", help="output folder")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
output = Path(args.output)

E, nu, yield_stress = 1.0, 0.3, 0.01
porosity = 0.2
radius = np.sqrt(porosity / np.pi)
matrix = J2Plasticity(E, nu, yield_stress, dim=2)  # perfectly plastic
# P2 in the cell: P1 triangles lock under (nearly) isochoric plastic flow in plane strain.
cell = cells.square(porosity, mesh_size=0.15 if args.quick else 0.07)
model = PlasticityModel(cell, {"matrix": matrix, "inclusion": None}, degree=2)
one_phase_limit = 2 / np.sqrt(3) * yield_stress
bounds = ((1 - 2 * radius) * one_phase_limit, (1 - porosity) * one_phase_limit)
say(f"cell: {model.cell.num_dofs} dofs, {model.cell.num_plastic_points} plastic points")
# -

# ## The macro problem
#
# The unit plate is pulled at its top edge ($u_y = \delta$), held at the bottom
# ($u_y = 0$) and on its left edge ($u_x = 0$); its right edge is free. By equilibrium
# (no body force) the mean stresses over the plate are $\bar\Sigma_{yy} = F/\text{width}$
# ($F$ the force on the top edge) and $\bar\Sigma_{xx} = 0$. Macro points with equal
# strain and equal history share a micro solve.

# +
top_displacement = 6 * yield_stress / E
plate = mesh.create_unit_square(comm, 2, 2)
problem = StaticElasticity(
    plate,
    model,
    dirichlet=[
        (lambda x: np.isclose(x[1], 0.0), 0.0, 1),
        (lambda x: np.isclose(x[0], 0.0), 0.0, 0),
        (lambda x: np.isclose(x[1], 1.0), top_displacement, 1),
    ],
    quadrature_degree=1,
)


def macro_stress():
    """The mean macro Voigt stress over the plate (equal cells: the mean of cell averages)."""
    local = problem.cell_stresses()
    return comm.allreduce(local.sum(axis=0), MPI.SUM) / comm.allreduce(len(local), MPI.SUM)


loads = [0.01] + list(np.linspace(0.1, 1.0, 5 if args.quick else 12))
curve = [(0.0, 0.0)]
for load in loads:
    report = problem.solve(load=load)
    curve.append((load * top_displacement, macro_stress()[1]))
    delta_text = f"delta = {load * top_displacement:.5f}"
    say(f"  {delta_text}: Sigma_yy = {curve[-1][1]:.6f} ({report.iterations} Newton)")
elastic_slope = curve[1][1] / curve[1][0]  # the first step is elastic
peak = max(s for _, s in curve)
# -

# ## Unloading to zero macro stress
#
# Back along the elastic slope to $\Sigma_{yy} = 0$, then secant corrections if the
# unloading is not purely elastic.

# +
delta = curve[-1][0]
slope = elastic_slope
for _ in range(6):
    stress = macro_stress()[1]
    if abs(stress) < 1e-10 * yield_stress:
        break
    delta -= stress / slope
    problem.solve(load=delta / top_displacement)
    curve.append((delta, macro_stress()[1]))
    slope = (curve[-2][1] - curve[-1][1]) / (curve[-2][0] - curve[-1][0])
residual_macro = macro_stress()
say(f"unloaded to delta = {delta:.5f}: Sigma = {residual_macro}")
# -

# ## The plastic zone and the residual stresses in the cell
#
# The cell of one macro point, solved again at the final macro strain from the point's
# committed internal variables (which is exactly the last accepted solve).

# +
store = problem.coupling.dispatcher.history
committed = {name: store.values(name, "committed")[0] for name in store.shapes}
strain = problem.coupling.last_inputs["strain"][0]
response = model.cell.respond(strain, committed)
fields = model.cell.fields()
micro = fields["stress"].x.array.reshape(-1, 3)
phase = fields["phase"].x.array
largest_residual = np.abs(micro[phase == cells.MATRIX]).max()
alpha = committed["equivalent_plastic_strain"]
files = problem.write(output / "plate")
if comm.rank == 0:
    files["cell"] = write_vtx(
        output / "cell_plastic_zone.bp",
        [fields[n] for n in ("stress", "equivalent_plastic_strain", "phase")],
    )
for kind, path in files.items():
    say(f"wrote {kind:<12} {path}")
# -

# ## Picture: the load–unload curve and the plastic zone

# +
if comm.rank == 0:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.tri as mtri

    curve_array = np.array(curve)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    left.plot(
        curve_array[:, 0] / (yield_stress / E),
        curve_array[:, 1] / yield_stress,
        "o-",
        label="FE² (perforated plate)",
    )
    left.axhline(
        one_phase_limit / yield_stress, color="k", ls=":", label="one-phase limit 2/√3 σ_y"
    )
    for value, text in zip(bounds, ("lower bound (1 − 2r)", "upper bound (1 − f)")):
        left.axhline(value / yield_stress, color="gray", ls="--")
        left.annotate(text, (0.1, value / yield_stress), va="bottom", fontsize=9)
    left.set_xlabel("top displacement δ / (σ_y / E)")
    left.set_ylabel("macro stress Σ_yy / σ_y")
    left.set_title("load past the limit, unload")
    left.legend(loc="lower center")
    msh = model.cell.mesh
    x = msh.geometry.x
    triangles = msh.geometry.dofmaps[0][:, :3]
    eq = fields["equivalent_plastic_strain"].x.array[
        fields["equivalent_plastic_strain"].function_space.dofmap.list[:, 0]
    ]
    picture = right.tripcolor(
        mtri.Triangulation(x[:, 0], x[:, 1], triangles), eq / (yield_stress / E), cmap="inferno"
    )
    right.set_aspect("equal")
    right.set_title("cell: plastic strain / (σ_y/E), unloaded")
    figure.colorbar(picture, ax=right)
    output.mkdir(parents=True, exist_ok=True)
    figure.savefig(output / "fe2_plasticity.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    say(f"wrote picture      {output / 'fe2_plasticity.png'}")
# -

# ## Checks

# +
permanent_set = delta
micro_average = np.abs(response.stress).max()
upper_text = f"{bounds[1] / one_phase_limit:.4f}"
checks = {
    f"peak mean Sigma_yy = {peak / one_phase_limit:.4f} x 2/sqrt(3) sigma_y in the bounds "
    f"[{bounds[0] / one_phase_limit:.4f}, {upper_text}]": bounds[0] <= peak <= bounds[1],
    f"loaded past yield: plastic strain up to {alpha.max() / (yield_stress / E):.1f} sigma_y/E": (
        alpha.max() > yield_stress / E
    ),
    f"unloaded: mean Sigma_yy = {residual_macro[1]:.1e}, mean Sigma_xx = "
    f"{residual_macro[0]:.1e} (< 1e-9 sigma_y)": np.abs(residual_macro[:2]).max()
    < 1e-9 * yield_stress,
    f"permanent set {permanent_set / top_displacement:.3f} of the peak displacement": (
        0.5 * top_displacement < permanent_set < top_displacement
    ),
    f"micro residual stresses up to {largest_residual / yield_stress:.2f} sigma_y, cell "
    f"average {micro_average / yield_stress:.1e} sigma_y": largest_residual > 0.1 * yield_stress
    and micro_average < 1e-2 * largest_residual,
}
for text, ok in checks.items():
    say(f"  [{'ok' if ok else 'FAILED'}] {text}")
if not all(checks.values()):
    sys.exit("demo_fe2_plasticity: a check FAILED")
say("demo_fe2_plasticity: all checks passed")
# -
