r"""The ``hmm-fem`` command.

Examples::

    hmm-fem info
    hmm-fem cell conductivity --geometry square --volume-fraction 0.4 \
        --matrix 1 --inclusion 10 --json
    hmm-fem demo cell_conductivity

Errors go to stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path

__all__ = ["main"]

GEOMETRIES = ("laminate", "square", "hexagonal", "cubic", "random")


class UsageError(Exception):
    """Bad command-line input (reported on stderr, exit code 2)."""


def _demo_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "demos"


def _demos() -> dict[str, Path]:
    return {p.stem.removeprefix("demo_"): p for p in sorted(_demo_dir().glob("demo_*.py"))}


def _parse_property(text: str, option: str) -> float | list[float]:
    """``"2.5"`` -> 2.5 ; ``"1,2"`` -> [1.0, 2.0] (a diagonal tensor)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected a number or comma-separated numbers"
        ) from None
    return values[0] if len(values) == 1 else values


def _add_cell_arguments(parser: argparse.ArgumentParser, matrix: tuple, inclusion: tuple) -> None:
    """Add the arguments every two-phase cell command shares.

    Where the cell comes from, the two phases (``(metavar, help)`` each), mesh size,
    degree, the random-cell options and --json.
    """
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--geometry", choices=GEOMETRIES, help="generated unit cell")
    where.add_argument("--mesh", metavar="FILE.msh", help="a periodic gmsh mesh with phase tags")
    parser.add_argument(
        "--volume-fraction", type=float, metavar="F", help="inclusion volume fraction"
    )
    parser.add_argument("--matrix", required=True, metavar=matrix[0], help=matrix[1])
    parser.add_argument("--inclusion", required=True, metavar=inclusion[0], help=inclusion[1])
    parser.add_argument(
        "--mesh-size",
        type=float,
        metavar="H",
        help="element size in units of the cell side (default: geometry-adapted)",
    )
    parser.add_argument(
        "--degree", type=int, default=1, metavar="P", help="Lagrange degree (default 1)"
    )
    parser.add_argument("--num-inclusions", type=int, default=10, help="random: number of discs")
    parser.add_argument("--seed", type=int, default=0, help="random: seed of the placement")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hmm-fem",
        description="Heterogeneous multiscale (FE2/HMM) computations on FEniCSx.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="print the versions of DOLFINx, PETSc, dolfinx_mpc, gmsh and MPI")

    cell = sub.add_parser("cell", help="solve a periodic cell problem for an effective tensor")
    cell_sub = cell.add_subparsers(dest="physics", metavar="PHYSICS")
    cond = cell_sub.add_parser(
        "conductivity",
        help="effective conductivity K* of a two-phase periodic cell",
        description="Effective conductivity tensor K* of a periodic two-phase cell. K* is in the "
        "units of --matrix and --inclusion.",
    )
    _add_cell_arguments(
        cond,
        ("K_M", "matrix conductivity: a number, or comma-separated diagonal values"),
        ("K_I", "inclusion conductivity (with --mesh: every non-matrix phase)"),
    )
    cond.add_argument("--dim", type=int, choices=(2, 3), default=2, help="laminate dimension")
    cond.add_argument("--output", metavar="DIR", help="write correctors and fluxes (VTX) to DIR")

    elas = cell_sub.add_parser(
        "elasticity",
        help="effective stiffness C* (Voigt) of a two-phase periodic cell",
        description="Effective stiffness C* of a two-phase cell in Voigt notation (order xx, yy, "
        "zz, yz, xz, xy; 2D: xx, yy, xy; engineering shear strains), in the units of E. "
        "2D cells are plane strain.",
    )
    _add_cell_arguments(
        elas,
        ("E,NU", "matrix Young's modulus, Poisson ratio"),
        ("E,NU", "inclusion Young's modulus, Poisson ratio (with --mesh: every other phase)"),
    )
    dims = elas.add_mutually_exclusive_group()
    dims.add_argument("--plane-strain", action="store_true", help="2D plane strain (default)")
    dims.add_argument("--3d", dest="three_d", action="store_true", help="3D cell (laminate, cubic)")
    elas.add_argument(
        "--bc",
        choices=("periodic", "kinematic", "traction"),
        default="periodic",
        help="cell boundary condition (default periodic)",
    )
    elas.set_defaults(dim=2, output=None)

    perm = cell_sub.add_parser(
        "permeability",
        help="permeability of the pore space of a periodic array of solid inclusions",
        description="Permeability tensor k of the pore space (periodic Stokes flow, viscosity 1, "
        "Taylor-Hood P2-P1), in units of the cell side squared. --flow axial gives the "
        "permeability along parallel cylinders of a 2D cell.",
    )
    perm.add_argument("--geometry", choices=("square", "hexagonal", "cubic"), required=True)
    perm.add_argument("--solid-fraction", type=float, metavar="F", help="solid volume fraction")
    perm.add_argument("--flow", choices=("transverse", "axial"), default="transverse")
    perm.add_argument("--mesh-size", type=float, metavar="H", help="element size (default adapted)")
    perm.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    demo = sub.add_parser("demo", help="run a demo script from demos/")
    demo.add_argument("name", nargs="?", help="demo name (omit to list them)")
    demo.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the demo")
    return parser


def _info() -> int:
    from importlib.metadata import PackageNotFoundError, version

    import dolfinx
    import gmsh
    from mpi4py import MPI
    from petsc4py import PETSc

    import hmm_fem

    def dist_version(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    rows = {
        "hmm-fem": hmm_fem.__version__,
        "python": sys.version.split()[0],
        "dolfinx": dolfinx.__version__,
        "dolfinx_mpc": dist_version("dolfinx_mpc"),
        "dolfinx-external-operator": dist_version("dolfinx-external-operator"),
        "scifem": dist_version("scifem"),
        "petsc": ".".join(str(v) for v in PETSc.Sys.getVersion()),
        "petsc4py": dist_version("petsc4py"),
        "gmsh": gmsh.__version__,
        "mpi": MPI.Get_library_version().splitlines()[0].strip(),
        "mpi4py": dist_version("mpi4py"),
        "ranks": str(MPI.COMM_WORLD.size),
    }
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    return 0


def _unit_cell(args, dim: int | None = None):
    """The unit cell named on the command line (generated, or loaded with --mesh)."""
    from hmm_fem import cells

    if args.mesh:
        return cells.load(args.mesh)
    if args.volume_fraction is None:
        raise UsageError(f"--volume-fraction is required with --geometry {args.geometry}")
    options = {"mesh_size": args.mesh_size}
    if args.geometry == "laminate":
        options["dim"] = dim or args.dim
    elif dim is not None:
        native = 3 if args.geometry == "cubic" else 2
        if dim != native:
            raise UsageError(
                f"--geometry {args.geometry} is a {native}D cell; "
                f"{'drop --3d' if native == 2 else 'use --3d'}"
            )
    if args.geometry == "random":
        options.update(num_inclusions=args.num_inclusions, seed=args.seed)
    return getattr(cells, args.geometry)(args.volume_fraction, **options)


def _report(args, unit_cell, problem, tensor, start, name, extra=None) -> None:
    """Print the result of a cell command (JSON with --json) and free the cell."""
    seconds = time.perf_counter() - start
    result = {
        "tensor": tensor.tolist(),
        **(extra or {}),
        "volume_fraction": unit_cell.volume_fraction,
        "dofs": problem.num_dofs,
        "seconds": seconds,
        "geometry": unit_cell.geometry,
        "target_volume_fraction": unit_cell.target_volume_fraction,
        "degree": problem.degree,
        "cells": unit_cell.num_cells,
        "solve_seconds": problem.seconds,
    }
    if getattr(args, "output", None):
        from hmm_fem.io import write_conductivity_cell

        files = write_conductivity_cell(problem, args.output)
        result["files"] = {k: str(v) for k, v in files.items()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"geometry        {unit_cell.geometry}")
        print(f"volume fraction {unit_cell.volume_fraction:.6f} (meshed)")
        print(f"dofs            {problem.num_dofs}")
        for key, value in (extra or {}).items():
            print(f"{key:<15} {value}")
        print(f"{name} =")
        for row in tensor:
            print("  " + "  ".join(f"{v: .8e}" for v in row))
        print(f"seconds         {seconds:.3f}")
        for kind, path in result.get("files", {}).items():
            print(f"wrote {kind:<11} {path}")
    problem.destroy()


def _cell_conductivity(args) -> int:
    from hmm_fem import cells

    start = time.perf_counter()
    k_m = _parse_property(args.matrix, "--matrix")
    k_i = _parse_property(args.inclusion, "--inclusion")
    unit_cell = _unit_cell(args)
    conductivities = {name: (k_m if name == "matrix" else k_i) for name in unit_cell.phases}
    problem = cells.ConductivityCell(unit_cell, conductivities, degree=args.degree)
    _report(args, unit_cell, problem, problem.effective_tensor(), start, "K*")
    return 0


def _cell_elasticity(args) -> int:
    from hmm_fem.cells.elasticity import ElasticityCell

    start = time.perf_counter()
    phases = {}
    for option, text in (("--matrix", args.matrix), ("--inclusion", args.inclusion)):
        values = _parse_property(text, option)
        if not isinstance(values, list) or len(values) != 2:
            raise UsageError(f"{option} {text!r}: expected E,NU (Young's modulus, Poisson ratio)")
        phases[option[2:]] = tuple(values)
    unit_cell = _unit_cell(args, dim=3 if args.three_d else 2)
    by_name = {
        name: (phases["matrix"] if name == "matrix" else phases["inclusion"])
        for name in unit_cell.phases
    }
    problem = ElasticityCell(unit_cell, by_name, degree=args.degree, bc=args.bc)
    tensor = problem.effective_tensor()
    extra = {
        "convention": "voigt",
        "bc": args.bc,
        "order": "xx, yy, zz, yz, xz, xy" if unit_cell.dim == 3 else "xx, yy, xy",
    }
    if unit_cell.dim == 2:
        extra["plane"] = "strain"
    _report(args, unit_cell, problem, tensor, start, "C* (Voigt)", extra)
    return 0


def _cell_permeability(args) -> int:
    from hmm_fem import cells

    start = time.perf_counter()
    if args.solid_fraction is None:
        raise UsageError(f"--solid-fraction is required with --geometry {args.geometry}")
    generator = getattr(cells, args.geometry)
    unit_cell = generator(args.solid_fraction, mesh_size=args.mesh_size)
    if args.flow == "axial":
        if unit_cell.dim != 2:
            raise UsageError(
                "--flow axial is for 2D cells of parallel cylinders (square, hexagonal)"
            )
        problem = cells.AxialFlowCell(unit_cell)
        k = problem.permeability()
        tensor = [[k]]
        space = problem.V
    else:
        problem = cells.PermeabilityCell(unit_cell)
        tensor = problem.permeability().tolist()
        space = problem.W
    seconds = time.perf_counter() - start
    result = {
        "tensor": tensor,
        "units": "cell_side^2",
        "solid_fraction": unit_cell.volume_fraction,
        "dofs": space.dofmap.index_map.size_global * space.dofmap.index_map_bs,
        "seconds": seconds,
        "flow": args.flow,
        "geometry": unit_cell.geometry,
        "target_solid_fraction": unit_cell.target_volume_fraction,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"geometry        {unit_cell.geometry} ({args.flow} flow)")
        print(f"solid fraction  {unit_cell.volume_fraction:.6f} (meshed)")
        print(f"dofs            {result['dofs']}")
        print("k / L^2 =")
        for row in tensor:
            print("  " + "  ".join(f"{v: .8e}" for v in row))
        print(f"seconds         {seconds:.3f}")
    problem.destroy()
    return 0


def _demo(args) -> int:
    demos = _demos()
    if not args.name:
        print("demos (hmm-fem demo NAME [--quick]):")
        for name, path in demos.items():
            print(f"  {name:<24} {path}")
        return 0
    if args.name not in demos:
        raise UsageError(f"no demo named {args.name!r}; available: {', '.join(demos) or 'none'}")
    sys.argv = [str(demos[args.name]), *args.args]
    runpy.run_path(str(demos[args.name]), run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hmm-fem`` console script; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            return _info()
        if args.command == "cell":
            if args.physics == "conductivity":
                return _cell_conductivity(args)
            if args.physics == "elasticity":
                return _cell_elasticity(args)
            if args.physics == "permeability":
                return _cell_permeability(args)
            parser.parse_args(["cell", "--help"])
        if args.command == "demo":
            return _demo(args)
        parser.print_help()
        return 0
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"hmm-fem: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a failed solve: say what failed, keep the exit code contract
        from hmm_fem.cells import CellSolveError

        if isinstance(err, CellSolveError | RuntimeError):
            print(f"hmm-fem: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
