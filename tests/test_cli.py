"""The `hmm-fem` command-line contract."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hmm_fem import cells, cli, references


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "hmm_fem", *args], capture_output=True, text=True, timeout=300
    )


def test_help_and_info():
    assert run("--help").returncode == 0
    info = run("info")
    assert info.returncode == 0
    for name in ("dolfinx", "petsc", "dolfinx_mpc", "gmsh", "mpi"):
        assert name in info.stdout


def test_cell_conductivity_json_contract():
    out = run(
        "cell",
        "conductivity",
        "--geometry",
        "laminate",
        "--volume-fraction",
        "0.3",
        "--matrix",
        "2",
        "--inclusion",
        "20",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"tensor", "volume_fraction", "dofs", "seconds"}
    exact = references.laminate_conductivity(2.0, 20.0, 0.3)
    assert abs(result["tensor"][0][0] - exact[0, 0]) < 1e-8
    assert abs(result["tensor"][1][1] - exact[1, 1]) < 1e-8
    assert abs(result["volume_fraction"] - 0.3) < 1e-12
    assert result["dofs"] > 0 and result["seconds"] > 0


def test_cell_conductivity_square_against_perrins_with_output(tmp_path):
    out = run(
        "cell",
        "conductivity",
        "--geometry",
        "square",
        "--volume-fraction",
        "0.4",
        "--matrix",
        "1",
        "--inclusion",
        "10",
        "--json",
        "--output",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert abs(result["tensor"][0][0] / references.PERRINS_CONTRAST_10[0.4] - 1) < 5e-3
    assert (tmp_path / "cell_correctors.bp").is_dir() and (tmp_path / "cell_flux.bp").is_dir()


def test_cell_conductivity_text_output():
    out = run(
        "cell",
        "conductivity",
        "--geometry",
        "hexagonal",
        "--volume-fraction",
        "0.2",
        "--matrix",
        "1",
        "--inclusion",
        "3",
    )
    assert out.returncode == 0 and "K* =" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--geometry", "square", "--volume-fraction", "0.9"], "touching limit"),
        (["--geometry", "square", "--volume-fraction", "-0.1"], "--volume-fraction -0.1"),
        (["--geometry", "square"], "--volume-fraction is required"),
        (["--geometry", "square", "--volume-fraction", "0.3", "--matrix", "-1"], "positive"),
        (
            ["--geometry", "square", "--volume-fraction", "0.3", "--matrix", "one"],
            "expected a number",
        ),
        (["--mesh", "no/such/file.msh"], "file.msh"),
        (["--geometry", "hexagon", "--volume-fraction", "0.3"], "invalid choice"),
    ],
)
def test_errors_go_to_stderr_with_exit_code_2(args, message):
    if "--matrix" not in args:
        args = [*args, "--matrix", "1"]
    out = run("cell", "conductivity", *args, "--inclusion", "10", "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    assert message in out.stderr


def test_cell_conductivity_from_a_user_mesh(tmp_path):
    from hmm_fem import cells

    path = tmp_path / "cell.msh"
    cells.square(0.3, msh_file=path)
    out = run(
        "cell", "conductivity", "--mesh", str(path), "--matrix", "1", "--inclusion", "10", "--json"
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert abs(result["tensor"][0][0] / references.perrins_square_array(1, 10, 0.3) - 1) < 5e-3


def test_cell_elasticity_json_contract_laminate_is_backus():
    """Layers normal to x here; the published values are for layers normal to x3, so the
    roles of the axes swap: C11 <-> C33, C23 = C12(published), C55 = C66 = C44(published)."""
    out = run(
        "cell",
        "elasticity",
        "--geometry",
        "laminate",
        "--volume-fraction",
        "0.5",
        "--matrix",
        "1,0.3",
        "--inclusion",
        "10,0.2",
        "--3d",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["convention"] == "voigt"
    assert set(result) >= {"tensor", "volume_fraction", "dofs", "seconds"}
    C = result["tensor"]
    published = {
        (1, 1): 6.034217,
        (1, 2): 1.482935,
        (0, 1): 0.814751,
        (0, 0): 2.401372,
        (4, 4): 0.704225,
        (3, 3): 2.275641,
    }
    for (i, j), value in published.items():
        assert abs(C[i][j] / value - 1) < 1e-6, (i, j, C[i][j], value)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--geometry", "square", "--volume-fraction", "0.3", "--3d"], "2D cell"),
        (["--geometry", "cubic", "--volume-fraction", "0.3"], "3D cell"),
        (["--geometry", "square", "--volume-fraction", "0.3", "--bc", "free"], "invalid choice"),
    ],
)
def test_cell_elasticity_errors(args, message):
    out = run("cell", "elasticity", *args, "--matrix", "1,0.3", "--inclusion", "10,0.2")
    assert out.returncode == 2 and message in out.stderr


def test_cell_elasticity_bad_moduli():
    out = run(
        "cell",
        "elasticity",
        "--geometry",
        "square",
        "--volume-fraction",
        "0.3",
        "--matrix",
        "1,0.6",
        "--inclusion",
        "10,0.2",
    )
    assert out.returncode == 2 and "0.6" in out.stderr


def test_cell_permeability_json_contract_sangani_acrivos():
    out = run("cell", "permeability", "--geometry", "square", "--solid-fraction", "0.2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["units"] == "cell_side^2"
    assert set(result) >= {"tensor", "solid_fraction", "dofs", "seconds"}
    assert abs(result["tensor"][0][0] / 1.9406e-2 - 1) < 1e-2  # Sangani & Acrivos (1982)


def test_cell_permeability_axial_drummond_tahir():
    out = run(
        "cell",
        "permeability",
        "--geometry",
        "square",
        "--solid-fraction",
        "0.2",
        "--flow",
        "axial",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    k = json.loads(out.stdout)["tensor"][0][0]
    phi = 0.2
    a2 = phi / np.pi
    reference = a2 * (-np.log(phi) - 1.476 + 2 * phi - phi**2 / 2) / (4 * phi)
    assert abs(k / reference - 1) < 3e-3


def test_cell_permeability_errors():
    out = run("cell", "permeability", "--geometry", "square", "--solid-fraction", "0.8", "--json")
    assert out.returncode == 2 and "touching limit" in out.stderr
    out = run(
        "cell", "permeability", "--geometry", "cubic", "--solid-fraction", "0.2", "--flow", "axial"
    )
    assert out.returncode == 2 and "axial" in out.stderr


def test_demo_list():
    out = run("demo")
    assert out.returncode == 0 and "cell_conductivity" in out.stdout
    assert "fe2_heat_spreader" in out.stdout
    assert run("demo", "no_such_demo").returncode == 2


# -- the exit-code contract: 0 success, 1 a computation failed, 2 user error, 3 internal failure --
def call(capsys, *args):
    """Run the command in process; return (exit code, stdout, stderr)."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


COND = ["cell", "conductivity", "--matrix", "1", "--inclusion", "10"]


def test_exit_code_1_for_a_computation_that_failed_for_a_stated_reason():
    """A contrast of 1e200 overflows the cell matrix: the library's solve check reports it."""
    out = run(
        "cell", "conductivity", "--geometry", "square", "--volume-fraction", "0.3",
        "--mesh-size", "0.2", "--matrix", "1", "--inclusion", "1e200",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "linear solve failed" in out.stderr and "Traceback" not in out.stderr


def test_stated_failures_are_the_library_exceptions():
    """The names the CLI looks up for exit code 1 exist and are exceptions."""
    import importlib

    for module, name in cli.STATED_FAILURES:
        assert issubclass(getattr(importlib.import_module(module), name), Exception)


def test_exit_code_3_for_an_internal_failure_with_traceback_and_where_to_report(
    capsys, monkeypatch
):
    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cells.ConductivityCell, "effective_tensor", broken)
    args = [*COND, "--geometry", "square", "--volume-fraction", "0.3", "--mesh-size", "0.2"]
    code, out, err = call(capsys, *args)
    assert code == 3
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert "issue tracker" in err
    assert "hmm-fem " + " ".join(args) in err  # the command line to put in the report


def test_a_value_error_during_the_solve_is_internal_not_a_user_error(capsys, monkeypatch):
    """Only the library's input validation, before any solve, is a user error."""

    def broken(self, *args, **kwargs):
        raise ValueError("operands could not be broadcast")

    monkeypatch.setattr(cells.ConductivityCell, "effective_tensor", broken)
    code, _, err = call(
        capsys, *COND, "--geometry", "square", "--volume-fraction", "0.3", "--mesh-size", "0.2"
    )
    assert code == 3 and "issue tracker" in err


def test_a_value_error_from_another_library_while_building_is_internal(capsys, monkeypatch):
    """A ValueError raised by NumPy (not by hmm-fem's validation) is not blamed on the user."""
    import numpy

    def broken(*args, **kwargs):
        return numpy.zeros(2).reshape(3)  # raises ValueError inside NumPy

    monkeypatch.setattr(cells, "square", broken)
    # --no-cache: the generator runs even if the cell cache holds this cell.
    code, _, err = call(
        capsys, *COND, "--geometry", "square", "--volume-fraction", "0.3", "--no-cache"
    )
    assert code == 3 and "issue tracker" in err


@pytest.mark.parametrize(
    "args, option, internal",
    [
        (
            ["cell", "permeability", "--geometry", "square", "--solid-fraction", "0.8"],
            "--solid-fraction 0.8",
            "volume_fraction",
        ),
        ([*COND, "--geometry", "square", "--volume-fraction", "0.9"], "--volume-fraction 0.9",
         "volume_fraction"),
        ([*COND, "--geometry", "square", "--volume-fraction", "0.3", "--mesh-size", "0.9"],
         "--mesh-size 0.9", "mesh_size"),
        ([*COND, "--geometry", "random", "--volume-fraction", "0.3", "--num-inclusions", "0"],
         "--num-inclusions 0", "num_inclusions"),
        ([*COND, "--geometry", "square", "--volume-fraction", "0.3", "--degree", "0"],
         "--degree", "degree"),
        (["cell", "conductivity", "--geometry", "square", "--volume-fraction", "0.3",
          "--matrix", "-1", "--inclusion", "10"], "--matrix -1", "phase 'matrix'"),
        (["cell", "elasticity", "--geometry", "square", "--volume-fraction", "0.3",
          "--matrix", "1,0.6", "--inclusion", "10,0.2"], "--matrix 1,0.6", "phase 'matrix'"),
    ],
)  # fmt: skip
def test_user_errors_name_the_option_typed(capsys, args, option, internal):
    code, out, err = call(capsys, *args)
    assert code == 2 and out == ""
    assert option in err, err
    assert internal not in err.replace(option.split()[0], ""), err
    assert "Traceback" not in err


def test_an_output_folder_that_cannot_be_made_is_a_user_error(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    base = [*COND, "--geometry", "square", "--volume-fraction", "0.3", "--mesh-size", "0.2"]
    code, _, err = call(capsys, *base, "--output", str(blocker))
    assert code == 2 and "--output" in err and "exists" in err
    code, _, err = call(capsys, *base, "--output", str(blocker / "sub"))
    assert code == 2 and "--output" in err and "Not a directory" in err


def test_jammed_random_discs_are_a_user_error_naming_the_options(capsys):
    code, _, err = call(
        capsys, *COND, "--geometry", "random", "--volume-fraction", "0.54",
        "--num-inclusions", "30", "--mesh-size", "0.2",
    )  # fmt: skip
    assert code == 2
    assert "--volume-fraction 0.54" in err and "--num-inclusions 30" in err
    assert "jammed" in err and "volume_fraction" not in err


def test_argparse_errors_and_help_return_their_codes_in_process(capsys):
    assert cli.main(["cell", "conductivity", "--geometry", "hexagon"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0


def test_demo_leaves_sys_argv_as_it_was(capsys, tmp_path):
    """`hmm-fem demo` sets sys.argv for the demo script and restores it, also on failure."""
    before = list(sys.argv)
    code = cli.main(
        ["demo", "cell_conductivity", "--quick", "--no-png", "--output", str(tmp_path / "out")]
    )
    assert code == 0 and "all checks passed" in capsys.readouterr().out
    assert sys.argv == before
    # The demo's own argument parser refuses an option: its exit code, argv restored.
    assert cli.main(["demo", "cell_conductivity", "--no-such-option"]) == 2
    assert sys.argv == before


def test_installed_package_ships_the_demos_and_meshes(tmp_path):
    """Install the package with pip, then run it with the repository off the path."""
    repo = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"  # an in-tree build would write build/ into the checkout
    source.mkdir()
    skip = shutil.ignore_patterns("__pycache__")
    for name in ("pyproject.toml", "README.md", "hmm_fem", "demos", "meshes"):
        if (repo / name).is_dir():
            shutil.copytree(repo / name, source / name, ignore=skip)
        elif (repo / name).is_file():
            shutil.copy(repo / name, source / name)
    target = tmp_path / "site-packages"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    # Every subpackage of the source tree is installed.
    subpackages = {p.parent.relative_to(repo) for p in (repo / "hmm_fem").rglob("__init__.py")}
    assert {p for p in subpackages if not (target / p / "__init__.py").is_file()} == set()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}

    def installed(*args):
        out = subprocess.run(
            [sys.executable, "-m", "hmm_fem", *args],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import hmm_fem; print(hmm_fem.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(target)  # not the checkout

    listing = installed("demo")
    for demo in sorted((repo / "demos").glob("demo_*.py")):
        assert demo.stem.removeprefix("demo_") in listing
        assert (target / "hmm_fem" / "demos" / demo.name).is_file()
    assert str(target / "hmm_fem" / "demos") in listing
    meshes = installed("meshes")
    for mesh in sorted((repo / "meshes").glob("*.msh")):
        assert (target / "hmm_fem" / "meshes" / mesh.name).is_file()
        assert str(target / "hmm_fem" / "meshes" / mesh.name) in meshes
    assert (target / "hmm_fem" / "meshes" / "README.md").is_file()
    # The demo finds its mesh in the installed package.
    out = installed("demo", "cell_conductivity", "--quick", "--no-png", "--output", "out")
    assert "all checks passed" in out and "fibre_square_f0.4.msh" in out
