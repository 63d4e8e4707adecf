r"""The ``hmm-fem`` command.

Examples::

    hmm-fem info
    hmm-fem cell conductivity --geometry square --volume-fraction 0.4 \
        --matrix 1 --inclusion 10 --json
    hmm-fem cell conductivity --mesh meshes/fibre_square_f0.4.msh --matrix 1 --inclusion 10
    hmm-fem demo cell_conductivity
    hmm-fem meshes
    hmm-fem paraview results/cell_conductivity [--png DIR]

Exit codes (messages go to stderr, results to stdout):

* ``0``: success.
* ``1``: a computation failed for a stated reason: a cell, micro or macro solve did not
  converge or gave an unusable answer (:class:`hmm_fem.cells.CellSolveError`,
  :class:`hmm_fem.micro.MicroSolveError`, :class:`hmm_fem.coupling.MacroSolveError`), or a
  demo's own checks failed. The reason is printed.
* ``2``: a user error: a bad option or value (the message names the option), a mesh file
  that is missing or not a periodic cell, an output folder that cannot be written.
* ``3``: an internal failure: any other exception. The traceback is printed with the
  command line, to be reported on the hmm-fem issue tracker.

How a user error is told from a bug. The library validates its arguments where they
enter (the geometry generators, ``cells.load``, the cell-problem constructors) and raises
``ValueError`` there; a bug can raise ``ValueError`` too. A ``ValueError`` counts as a
user error only if both (a) it is raised while the command turns the options into a cell
and a cell problem, before any solve, and (b) it is raised by hmm-fem's own code (the
innermost frame of its traceback is in the ``hmm_fem`` package), not by NumPy, DOLFINx or
another library underneath. Any other ``ValueError`` is an internal failure (3). The
library's messages name its parameters (``volume_fraction=0.8``); the command rewrites
them with the option that gave the value (``--solid-fraction 0.8``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import runpy
import shlex
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["main"]

GEOMETRIES = ("laminate", "square", "hexagonal", "cubic", "random")
#: The generated cells with curved (disc) boundaries, which --curved meshes with
#: second-order cells.
CURVED_GEOMETRIES = ("square", "hexagonal", "random")


#: The library's exceptions for a computation that failed for a stated reason (exit code 1),
#: as (module, name). Looked up in ``sys.modules`` only: an exception of a class whose module
#: was never imported cannot have been raised, and the error path imports nothing.
STATED_FAILURES = (
    ("hmm_fem.cells", "CellSolveError"),
    ("hmm_fem.micro", "MicroSolveError"),
    ("hmm_fem.coupling", "MacroSolveError"),
)

_PACKAGE = Path(__file__).resolve().parent


class UsageError(Exception):
    """Bad command-line input (reported on stderr, exit code 2)."""


def _shipped(folder: str) -> Path:
    """The ``demos`` or ``meshes`` folder shipped with the package.

    Installed, it is the package data ``hmm_fem/<folder>`` (pyproject.toml maps the
    repository's top-level folder there); in a checkout it is ``<repository>/<folder>``.
    """
    import importlib.resources

    installed = importlib.resources.files("hmm_fem") / folder
    if installed.is_dir():
        return Path(str(installed))
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / folder).is_dir():
        return checkout / folder
    raise RuntimeError(
        f"the {folder}/ folder is neither installed with the package ({installed}) nor in a"
        f" source checkout ({checkout / folder}); the installation is incomplete"
    )


def _demos() -> dict[str, Path]:
    return {p.stem.removeprefix("demo_"): p for p in sorted(_shipped("demos").glob("demo_*.py"))}


def _raised_by_hmm_fem(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is in the hmm_fem package."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)


def _name_options(message: str, options: Mapping[str, str]) -> str:
    """Rewrite the library's parameter names in ``message`` as the options the user typed.

    ``volume_fraction=0.8 is ...`` becomes ``--solid-fraction 0.8 is ...``. A bare name is
    rewritten if it is an identifier (``volume_fraction``), or a plain word (``degree``)
    only where it opens the message, as the library's argument checks write it.
    """
    for parameter, option in options.items():
        message = re.sub(rf"\b{parameter}=", f"{option} ", message)
        bare = rf"(?<![-\w]){parameter}\b" if "_" in parameter else rf"^{parameter}\b"
        message = re.sub(bare, option, message)
    return message


@contextlib.contextmanager
def _from_options(options: Mapping[str, str] | None = None) -> Iterator[None]:
    """A block that turns option values into library objects, before any solve.

    Inside it, a ``ValueError`` raised by hmm-fem's own validation is the user's input
    rejected: it becomes a :class:`UsageError` (exit code 2) whose message names the
    options (``options`` maps a library parameter name to the option that set it).
    Anything else passes through unchanged. (The library reports a missing or unreadable
    mesh file as a ``ValueError`` too.)
    """
    try:
        yield
    except ValueError as err:
        if not _raised_by_hmm_fem(err):
            raise
        raise UsageError(_name_options(str(err), options or {})) from err


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
    parser.add_argument(
        "--curved",
        action="store_true",
        help="second-order cells that follow the curved disc boundaries (square, hexagonal,"
        " random); with --degree 2 the isoparametric P2 cell, far more accurate than straight P2",
    )
    _add_cache_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="mesh the generated cell with gmsh even if the cell cache holds it (the cache"
        " is $HMM_FEM_CELL_CACHE, default ~/.cache/hmm-fem/cells)",
    )


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
    _add_cache_argument(perm)
    perm.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    sub.add_parser("meshes", help="list the ready periodic cells (.msh) shipped with hmm-fem")

    demo = sub.add_parser("demo", help="run a demo script from demos/")
    demo.add_argument("name", nargs="?", help="demo name (omit to list them)")
    demo.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the demo")

    view = sub.add_parser(
        "paraview",
        help="open a results folder in ParaView with the intended view (or render PNGs)",
        description="Open every VTX folder (*.bp) of a results folder in ParaView, each "
        "coloured by its first array; with --png, render one PNG per file with ParaView's "
        "Python instead (no window). Needs ParaView with its ADIOS2 VTX reader "
        "(`paraview` and `pvpython` on PATH; the hmm-fem environment has them).",
    )
    view.add_argument("folder", help="a results folder, e.g. results/cell_conductivity")
    view.add_argument("--png", metavar="DIR", help="render PNGs into DIR instead of a window")
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


#: Library parameter -> option, for the messages of the generators and cell problems.
_CELL_OPTIONS = {
    "volume_fraction": "--volume-fraction",
    "mesh_size": "--mesh-size",
    "num_inclusions": "--num-inclusions",
    "degree": "--degree",
}


def _generate(geometry: str, args, *positional, **options):
    """Run the cell generator ``geometry``, through the cell cache unless --no-cache."""
    if getattr(args, "no_cache", False):
        from hmm_fem import cells

        return getattr(cells, geometry)(*positional, **options)
    from hmm_fem.geometry.cache import cached_cell

    return cached_cell(geometry, *positional, **options)


def _unit_cell(args, dim: int | None = None):
    """The unit cell named on the command line (generated, or loaded with --mesh)."""
    if args.mesh:
        for option, value in (("--volume-fraction", args.volume_fraction),
                              ("--mesh-size", args.mesh_size)):  # fmt: skip
            if value is not None:
                raise UsageError(
                    f"{option} applies to a generated cell (--geometry); a --mesh cell is"
                    " used as meshed"
                )
        if args.curved:
            raise UsageError(
                "--curved applies to a generated cell (--geometry square, hexagonal or"
                " random); a --mesh cell is used as meshed (write it with second-order"
                " elements for curved cells)"
            )
        from hmm_fem.geometry import load

        with _from_options():
            return load(args.mesh)
    if args.volume_fraction is None:
        raise UsageError(f"--volume-fraction is required with --geometry {args.geometry}")
    options = {"mesh_size": args.mesh_size}
    if args.curved:
        if args.geometry not in CURVED_GEOMETRIES:
            raise UsageError(
                f"--curved applies to the disc cells ({', '.join(CURVED_GEOMETRIES)}); the"
                f" {args.geometry} cell has no curved boundaries to follow"
                + (" (a laminate has plane interfaces)" if args.geometry == "laminate" else "")
            )
        options["order"] = 2
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
        try:
            with _from_options(_CELL_OPTIONS):
                return _generate("random", args, args.volume_fraction, **options)
        except RuntimeError as err:
            # The documented failure of random placement (no exception class of its own):
            # the discs asked for do not fit, which the user changes with the options.
            placement = "random: could not place"
            if not str(err).startswith(placement):
                raise
            raise UsageError(
                f"--geometry random --volume-fraction {args.volume_fraction:g}"
                f" --num-inclusions {args.num_inclusions} --seed {args.seed}:"
                f" {_name_options(str(err).removeprefix('random: '), _CELL_OPTIONS)}"
            ) from err
    with _from_options(_CELL_OPTIONS):
        return _generate(args.geometry, args, args.volume_fraction, **options)


def _check_output(args) -> None:
    """Refuse an --output that names an existing file before any work is done."""
    output = getattr(args, "output", None)
    if output and Path(output).exists() and not Path(output).is_dir():
        raise UsageError(f"--output {output}: a file of that name exists; give a folder")


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

        try:
            files = write_conductivity_cell(problem, args.output)
        except OSError as err:  # a folder that cannot be made: the user's path
            if err.filename is None:
                raise
            raise UsageError(
                f"--output {args.output}: cannot write '{err.filename}': {err.strerror}"
            ) from err
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
    from hmm_fem.materials.phases import as_conductivity

    start = time.perf_counter()
    _check_output(args)
    k_m = _parse_property(args.matrix, "--matrix")
    k_i = _parse_property(args.inclusion, "--inclusion")
    unit_cell = _unit_cell(args)
    with _from_options(_CELL_OPTIONS):
        # Checked here so that the message names the option (the cell names the phase).
        for option, text, value in (("--matrix", args.matrix, k_m),
                                    ("--inclusion", args.inclusion, k_i)):  # fmt: skip
            as_conductivity(value, unit_cell.dim, f"{option} {text}")
        conductivities = {name: (k_m if name == "matrix" else k_i) for name in unit_cell.phases}
        problem = cells.ConductivityCell(unit_cell, conductivities, degree=args.degree)
    extra = {"geometry_order": 2} if args.curved else None
    _report(args, unit_cell, problem, problem.effective_tensor(), start, "K*", extra)
    return 0


def _cell_elasticity(args) -> int:
    from hmm_fem.cells.elasticity import ElasticityCell
    from hmm_fem.materials.phases import as_stiffness

    start = time.perf_counter()
    phases = {}
    for option, text in (("--matrix", args.matrix), ("--inclusion", args.inclusion)):
        values = _parse_property(text, option)
        if not isinstance(values, list) or len(values) != 2:
            raise UsageError(f"{option} {text!r}: expected E,NU (Young's modulus, Poisson ratio)")
        phases[option] = (text, tuple(values))
    unit_cell = _unit_cell(args, dim=3 if args.three_d else 2)
    with _from_options(_CELL_OPTIONS):
        for option, (text, values) in phases.items():
            as_stiffness(values, unit_cell.dim, f"{option} {text}")
        by_name = {
            name: phases["--matrix" if name == "matrix" else "--inclusion"][1]
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
    if args.curved:
        extra["geometry_order"] = 2
    _report(args, unit_cell, problem, tensor, start, "C* (Voigt)", extra)
    return 0


def _cell_permeability(args) -> int:
    from hmm_fem import cells

    start = time.perf_counter()
    if args.solid_fraction is None:
        raise UsageError(f"--solid-fraction is required with --geometry {args.geometry}")
    if args.flow == "axial" and args.geometry == "cubic":  # before meshing the 3D cell
        raise UsageError("--flow axial is for 2D cells of parallel cylinders (square, hexagonal)")
    with _from_options({"volume_fraction": "--solid-fraction", "mesh_size": "--mesh-size"}):
        unit_cell = _generate(args.geometry, args, args.solid_fraction, mesh_size=args.mesh_size)
    with _from_options({"volume_fraction": "--solid-fraction"}):
        problem = (cells.AxialFlowCell if args.flow == "axial" else cells.PermeabilityCell)(
            unit_cell
        )
    if args.flow == "axial":
        tensor = [[problem.permeability()]]
        space = problem.V
    else:
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


def _exit_code(stop: SystemExit) -> int:
    """The exit code of a ``SystemExit``, as the interpreter would give it (a message: 1)."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code
    print(stop.code, file=sys.stderr)
    return 1


def _demo(args) -> int:
    demos = _demos()
    if not args.name:
        print(f"demos in {_shipped('demos')} (hmm-fem demo NAME [--quick]):")
        for name, path in demos.items():
            print(f"  {name:<24} {path}")
        return 0
    if args.name not in demos:
        raise UsageError(f"no demo named {args.name!r}; available: {', '.join(demos) or 'none'}")
    path = str(demos[args.name])
    saved = sys.argv
    sys.argv = [path, *args.args]  # the demo parses its own arguments
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:  # the demo's argparse (2) or its failed checks (a message: 1)
        return _exit_code(stop)
    finally:
        sys.argv = saved
    return 0


def _paraview(args) -> int:
    import os
    import shutil
    import subprocess

    from hmm_fem.io import paraview_view

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"paraview: no folder {folder}; give a results folder of a demo or run")
    if not paraview_view.vtx_files(folder):
        raise UsageError(f"paraview: {folder} holds no VTX folder (*.bp) to open")
    program = "pvpython" if args.png else "paraview"
    found = shutil.which(program)
    if found is None:
        raise UsageError(
            f"paraview: `{program}` is not on PATH; install ParaView (5.11 or newer, with the "
            "ADIOS2 VTX reader) or run inside the hmm-fem environment (docker/run)"
        )
    script = paraview_view.__file__
    if args.png:
        command = [found, script, str(folder), "--png", args.png]
        env = None
    else:
        command = [found, f"--script={script}"]
        env = dict(os.environ, HMM_FEM_VIEW=str(folder.resolve()))
    return subprocess.run(command, env=env).returncode


def _meshes(args) -> int:
    folder = _shipped("meshes")
    print(f"ready periodic cells in {folder} (described in {folder / 'README.md'}):")
    for path in sorted(folder.glob("*.msh")):
        print(f"  {path.name:<28} {path.stat().st_size / 1e6:6.2f} MB  {path}")
    print("use one with --mesh FILE, or in Python with hmm_fem.cells.load(FILE)")
    return 0


def _failed_for_a_stated_reason(err: BaseException) -> bool:
    for module, name in STATED_FAILURES:
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and isinstance(err, kind):
            return True
    return False


def _report_internal(argv: list[str]) -> None:
    """Print an internal failure: the traceback, the command line and where to report it."""
    from hmm_fem import __version__

    print(
        "hmm-fem: internal error: this is a bug in hmm-fem (or in a library it calls), not a\n"
        "problem with your input. Please report it on the hmm-fem issue tracker with the\n"
        "command line, the versions (hmm-fem info) and the traceback below.\n"
        f"  command line: hmm-fem {shlex.join(argv)}\n"
        f"  hmm-fem {__version__}, python {sys.version.split()[0]}",
        file=sys.stderr,
    )
    traceback.print_exc(file=sys.stderr)


def _fast_start() -> None:
    """Cut the start-up of the cell commands (they compute on one process, ``COMM_SELF``).

    Both steps act only in a fresh process (before MPI and DOLFINx are loaded), and change
    no result:

    * ``UCX_MEM_EVENTS=no`` (unless set): loading Open MPI loads UCX, whose library
      constructor installs memory-event hooks (0.4 s). They serve UCX's RDMA
      registration cache; the cell commands send no messages, and our Open MPI
      configuration does not use UCX for messages anyway (``pml ob1``).
    * FFCx and ``dolfinx.fem.petsc`` import numba, when installed, only to define
      helpers for numba-compiled kernels (``ffcx.codegeneration.utils``,
      ``dolfinx.fem.petsc.numba_utils``; 0.2-0.4 s); DOLFINx's JIT of C kernels and our
      cells never use them. Those two modules are imported here with numba hidden (their
      own fallback when numba is absent); numba itself stays importable for everything
      else.
    """
    if "mpi4py.MPI" not in sys.modules:
        import os

        os.environ.setdefault("UCX_MEM_EVENTS", "no")
    users = ("ffcx.codegeneration.utils", "dolfinx.fem.petsc")
    if "numba" not in sys.modules and not any(name in sys.modules for name in users):
        import importlib

        sys.modules["numba"] = None  # type: ignore[assignment]  # import numba -> ImportError
        try:
            for name in users:
                importlib.import_module(name)
        finally:
            del sys.modules["numba"]


def _run(parser: argparse.ArgumentParser, args) -> int:
    if args.command == "info":
        return _info()
    if args.command == "cell":
        if args.physics is not None:
            _fast_start()
        if args.physics == "conductivity":
            return _cell_conductivity(args)
        if args.physics == "elasticity":
            return _cell_elasticity(args)
        if args.physics == "permeability":
            return _cell_permeability(args)
        parser.parse_args(["cell", "--help"])
    if args.command == "demo":
        return _demo(args)
    if args.command == "meshes":
        return _meshes(args)
    if args.command == "paraview":
        return _paraview(args)
    parser.print_help()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hmm-fem`` console script; returns the exit code.

    The codes are those of the module docstring: 0 success, 1 a computation that failed
    for a stated reason, 2 a user error, 3 an internal failure (traceback printed).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a bad option (2; argparse printed why)
        return _exit_code(stop)
    try:
        return _run(parser, args)
    except SystemExit as stop:  # `hmm-fem cell` alone prints the cell help
        return _exit_code(stop)
    except UsageError as err:
        print(f"hmm-fem: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if _failed_for_a_stated_reason(err):
            print(f"hmm-fem: computation failed: {err}", file=sys.stderr)
            return 1
        _report_internal(argv)
        return 3


if __name__ == "__main__":
    sys.exit(main())
