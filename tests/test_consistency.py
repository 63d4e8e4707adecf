"""One of each: one periodicity tolerance, one SPD rule, and no hidden global state."""

import numpy as np
import pytest

from hmm_fem import cells, references
from hmm_fem.cells.solver import CellSolveError, check_effective_tensor
from hmm_fem.geometry import PERIODICITY_TOLERANCE
from hmm_fem.materials import as_conductivity, require_spd, spd_defect


def test_a_mesh_the_periodicity_check_accepts_is_constrained_periodically():
    """Nodes of the face x = 1 moved off it by half the tolerance: the periodicity check
    accepts the mesh, so the cell problem must treat those nodes as periodic too. With the
    cell problems' old, tighter tolerance (1e-9) they were left free and the laminate's
    K*_xx came out as 0.476 instead of 1.5625, silently."""
    cell = cells.laminate(0.4, mesh_size=0.1)
    x = cell.mesh.geometry.x
    face = np.isclose(x[:, 0], 1.0) & (x[:, 1] > 1e-6) & (x[:, 1] < 1 - 1e-6)
    x[face, 0] += 0.5 * PERIODICITY_TOLERANCE
    cells.check_periodic(cell.mesh, cell.lengths)
    K = cells.ConductivityCell(cell, {"matrix": 1.0, "inclusion": 10.0}).effective_tensor()
    exact = references.laminate_conductivity(1.0, 10.0, cell.volume_fraction)
    assert np.abs(K - exact).max() < 1e-7 * exact.max()


MATRICES = {
    "asymmetric below the tolerance": np.array([[1.0, 1e-10], [0.0, 1.0]]),
    "asymmetric": np.array([[1.0, 1e-3], [0.0, 1.0]]),
    "numerically singular": np.array([[1.0, 0.0], [0.0, 1e-12]]),
    "indefinite": np.array([[1.0, 2.0], [2.0, 1.0]]),
    "not finite": np.array([[1.0, np.nan], [np.nan, 1.0]]),
    "anisotropic": np.array([[1.0, 0.5], [0.5, 2.0]]),
}


@pytest.mark.parametrize("name", MATRICES)
def test_phase_inputs_and_effective_tensors_obey_one_rule(name):
    """The same verdict for a phase conductivity and for a computed K*: the three checks
    used to differ (symmetry to 1e-12, 1e-8 or 1e-6; eigenvalues > 0 or > 1e-9 of the
    scale), so a matrix accepted as input could be refused as output and back."""
    matrix = MATRICES[name]
    verdict = spd_defect(matrix) is None

    def accepts(check, error):
        try:
            check()
        except error:
            return False
        return True

    assert accepts(lambda: as_conductivity(matrix, 2, "k"), ValueError) == verdict
    assert accepts(lambda: check_effective_tensor(matrix, "K*"), CellSolveError) == verdict
    assert accepts(lambda: require_spd(matrix, "k"), ValueError) == verdict
    assert verdict == (name in ("asymmetric below the tolerance", "anisotropic"))


def test_pictures_leave_pyvista_settings_alone(tmp_path):
    """Writing a PNG renders off screen without switching pyvista's global OFF_SCREEN."""
    pyvista = pytest.importorskip("pyvista")
    from hmm_fem.io import plot_cell_fields

    before = pyvista.OFF_SCREEN
    problem = cells.ConductivityCell(
        cells.square(0.3, mesh_size=0.1), {"matrix": 1.0, "inclusion": 5.0}
    )
    problem.effective_tensor()
    path = plot_cell_fields(problem, tmp_path / "cell.png")
    assert path.stat().st_size > 10_000
    assert pyvista.OFF_SCREEN == before


def test_the_readme_names_the_default_cell_solver():
    """The README said the default cell solver was "a direct LU (MUMPS)"; it is the one of
    DEFAULT_SOLVER_OPTIONS (CHOLMOD Cholesky)."""
    from pathlib import Path

    from hmm_fem.cells import DEFAULT_SOLVER_OPTIONS

    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text().split())
    start = readme.index("The default solver is")
    sentence = readme[start : readme.index(";", start)]
    package = DEFAULT_SOLVER_OPTIONS["pc_factor_mat_solver_type"]
    assert package.upper() in sentence.upper() and "LU (MUMPS)" not in sentence
