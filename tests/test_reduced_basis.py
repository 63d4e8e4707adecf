"""The certified reduced basis against the full cell solves, exact limits and bad input.

The full solves come from the cells' own ``effective_tensor`` (the conductivity cell's own
affine path, the elasticity cell's full assembly), not from the reduced basis's matrices.
The bases are trained to a relative bound of 1e-6 so that their errors lie well above the
round-off of the full solves and the effectivities can be measured.
"""

import warnings

import numpy as np
import pytest

from hmm_fem import cells, references
from hmm_fem.cells import (
    ConductivityCell,
    ElasticityCell,
    OutsideTrainingRangeWarning,
    ReducedBasis,
)

CONTRAST = {"matrix": 1.0, "inclusion": (1.0, 1000.0)}


@pytest.fixture(scope="module")
def square():
    problem = ConductivityCell(cells.square(0.4, mesh_size=0.1), {"matrix": 1.0, "inclusion": 2.0})
    rb = ReducedBasis.train(problem, CONTRAST, tolerance=1e-6, training_size=64)
    yield problem, rb
    problem.destroy()


def check_certified(T_rb, T_full, result, what):
    """0 <= T_N - T <= B: the true error is positive semidefinite and below the bound.

    Up to the round-off of the full solve: its energy formula cancels down from the
    arithmetic mean <C> (contrast 1000: K* = 3.4 from <k> = 400), about 1e-14 max|<C>|.
    """
    E = T_rb - T_full
    rounding = 1e-13 * np.abs(result.arithmetic_mean).max()
    assert np.linalg.eigvalsh(E)[0] >= -rounding, what
    # Loewner order: B - E positive semidefinite; then the norm and the entries.
    assert np.linalg.eigvalsh(result.bound - E)[0] >= -rounding, what
    err = np.linalg.norm(E, 2)
    assert err <= result.error_bound + rounding, what
    assert np.all(np.abs(E) <= result.entry_bounds + rounding), what
    return err


def test_conductivity_within_bound_on_random_contrasts(square):
    problem, rb = square
    assert rb.converged and 1 < len(rb.references) <= 8
    rng = np.random.default_rng(7)
    effectivities, relative_bounds = [], []
    for _ in range(100):
        values = {"matrix": 1.0, "inclusion": float(np.exp(rng.uniform(0, np.log(1000))))}
        result = rb.evaluate(values)
        err = check_certified(result.tensor, problem.effective_tensor(values), result, values)
        relative_bounds.append(result.relative_error_bound)
        if err > 10 * max(result.rounding_bound, 1e-13 * np.abs(result.arithmetic_mean).max()):
            eff = result.error_bound / err
            assert 1.0 - 1e-9 <= eff <= result.effectivity_bound * (1 + 1e-6)
            effectivities.append(eff)
    assert max(relative_bounds) <= 1e-6
    # Effectivity: measured where the error is above the rounding floor of the bound.
    assert len(effectivities) >= 30
    assert np.median(effectivities) <= 20.0
    print(f"effectivity {min(effectivities):.2f}..{max(effectivities):.2f}")


def test_conductivity_against_rayleigh_and_homogeneity(square):
    """The physics: Rayleigh's K* of the disc array (discretisation error on this coarse
    mesh) and degree-one homogeneity in the conductivities (a common factor is inside)."""
    problem, rb = square
    f = problem.cell.volume_fraction
    for k in (5.0, 300.0):
        K = rb.effective_tensor({"matrix": 1.0, "inclusion": k})
        exact = references.rayleigh_square_array(1.0, k, f)
        assert abs(K[0, 0] - exact) < 2e-2 * exact
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            scaled = rb.effective_tensor({"matrix": 7.0, "inclusion": 7.0 * k})
        np.testing.assert_allclose(scaled, 7.0 * K, rtol=1e-12)


@pytest.mark.mpi
def test_contrast_one_gives_k_identity(square):
    _, rb = square
    result = rb.evaluate({"matrix": 3.0, "inclusion": 3.0})
    assert np.abs(result.tensor - 3.0 * np.eye(2)).max() <= max(result.error_bound, 1e-14)
    assert result.relative_error_bound < 1e-10


@pytest.mark.mpi
def test_laminate_gives_harmonic_and_arithmetic_means():
    f = 0.3
    problem = ConductivityCell(cells.laminate(f, mesh_size=0.1), {"matrix": 1.0, "inclusion": 2.0})
    rb = ReducedBasis.train(problem, CONTRAST, training_size=32)
    # One corrector per load case spans every contrast of a laminate.
    assert rb.size <= 2
    for k in (1.0, 13.0, 999.0):
        result = rb.evaluate({"matrix": 1.0, "inclusion": k})
        exact = references.laminate_conductivity(1.0, k, f)
        assert np.abs(result.tensor - exact).max() <= result.error_bound + 1e-10 * k
    problem.destroy()


def elasticity_ranges():
    return {
        "matrix": {"E": 1.0, "nu": (0.2, 0.4)},
        "inclusion": {"E": (1.0, 1000.0), "nu": (0.15, 0.35)},
    }


def test_elasticity_within_bound_and_limits():
    problem = ElasticityCell(
        cells.square(0.3, mesh_size=0.15), {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)}
    )
    rb = ReducedBasis.train(problem, elasticity_ranges(), tolerance=1e-6, training_size=64)
    assert rb.converged
    rng = np.random.default_rng(3)
    effectivities = []
    for _ in range(12):
        values = {
            "matrix": (1.0, rng.uniform(0.2, 0.4)),
            "inclusion": (float(np.exp(rng.uniform(0, np.log(1000)))), rng.uniform(0.15, 0.35)),
        }
        result = rb.evaluate(values)
        err = check_certified(result.tensor, problem.effective_tensor(values), result, values)
        assert result.relative_error_bound <= 1e-6
        if err > 10 * max(result.rounding_bound, 1e-13 * np.abs(result.arithmetic_mean).max()):
            effectivities.append(result.error_bound / err)
    assert effectivities and min(effectivities) >= 1.0 - 1e-9 and np.median(effectivities) <= 20
    # Contrast 1: the phase stiffness itself (plane strain).
    result = rb.evaluate({"matrix": (2.0, 0.3), "inclusion": (2.0, 0.3)})
    lam, mu = 2.0 * 0.3 / (1.3 * 0.4), 2.0 / 2.6
    exact = np.array([[lam + 2 * mu, lam, 0], [lam, lam + 2 * mu, 0], [0, 0, mu]])
    assert np.abs(result.tensor - exact).max() <= result.error_bound + 1e-13
    problem.destroy()


def test_elasticity_laminate_matches_backus():
    """Layers normal to x, plane strain: the (x3, x1) block of Backus's stiffness."""
    f, E, nu = 0.5, (1.0, 40.0), (0.3, 0.2)
    problem = ElasticityCell(
        cells.laminate(f, mesh_size=0.2), {"matrix": (1, 0.3), "inclusion": (2, 0.2)}
    )
    rb = ReducedBasis.train(problem, elasticity_ranges(), training_size=32)
    result = rb.evaluate({"matrix": (E[0], nu[0]), "inclusion": (E[1], nu[1])})
    C = references.backus_laminate(E, nu, (1 - f, f))
    exact = np.array([[C[2, 2], C[0, 2], 0], [C[0, 2], C[0, 0], 0], [0, 0, C[3, 3]]])
    assert np.abs(result.tensor - exact).max() <= result.error_bound + 1e-9 * C.max()
    problem.destroy()


def test_evaluate_many_equals_evaluate(square):
    _, rb = square
    ks = np.array([1.0, 17.0, 640.0])
    params = np.stack([np.ones(3), ks], axis=1)[:, :, None]
    many = rb.evaluate_many(params)
    for s, k in enumerate(ks):
        one = rb.evaluate({"matrix": 1.0, "inclusion": k})
        np.testing.assert_allclose(many["tensor"][s], one.tensor, rtol=1e-13)
        assert many["error_bound"][s] == pytest.approx(one.error_bound, rel=1e-10)


def test_save_load_round_trip_and_fingerprint(square, tmp_path):
    problem, rb = square
    path = tmp_path / "square.npz"
    rb.save(path)
    again = ReducedBasis.load(path, problem)
    values = {"matrix": 2.0, "inclusion": 55.0}
    a, b = rb.evaluate(values), again.evaluate(values)
    np.testing.assert_array_equal(a.tensor, b.tensor)
    np.testing.assert_array_equal(a.bound, b.bound)
    assert again.size == rb.size and again.history == rb.history and again.converged
    # Another mesh of the same geometry: same phases, other dofs and hash.
    other = ConductivityCell(cells.square(0.4, mesh_size=0.12), {"matrix": 1.0, "inclusion": 2.0})
    with pytest.raises(ValueError, match="different cell.*dofs"):
        ReducedBasis.load(path, other)
    other.destroy()
    elastic = ElasticityCell(problem.cell, {"matrix": (1.0, 0.3), "inclusion": (2.0, 0.3)})
    with pytest.raises(ValueError, match="different cell.*kind"):
        ReducedBasis.load(path, elastic)
    elastic.destroy()


def test_bad_input(square):
    problem, rb = square
    with pytest.raises(ValueError, match="inclusion.*positive"):
        rb.evaluate({"matrix": 1.0, "inclusion": -5.0})
    with pytest.raises(ValueError, match="anisotropic"):
        rb.evaluate({"matrix": 1.0, "inclusion": [2.0, 3.0]})
    with pytest.raises(ValueError, match="unknown phase"):
        rb.evaluate({"matrix": 1.0, "fibre": 3.0})
    with pytest.raises(ValueError, match="no conductivity given"):
        rb.evaluate({"matrix": 1.0})
    # Contrast 5000 is outside 1..1000 at any scale; contrast 1/2 too.
    for values in ({"matrix": 1.0, "inclusion": 5000.0}, {"matrix": 2.0, "inclusion": 1.0}):
        before = rb.outside_count
        with pytest.warns(OutsideTrainingRangeWarning, match="outside the training range"):
            result = rb.evaluate(values)
        assert not result.inside and rb.outside_count == before + 1
    rb.outside = "raise"
    try:
        with pytest.raises(ValueError, match="outside the training range"):
            rb.evaluate({"matrix": 1.0, "inclusion": 5000.0})
    finally:
        rb.outside = "warn"
    with pytest.raises(ValueError, match="lo <= hi"):
        ReducedBasis.train(problem, {"matrix": 1.0, "inclusion": (10.0, 1.0)})
    with pytest.raises(ValueError, match="positive"):
        ReducedBasis.train(problem, {"matrix": 1.0, "inclusion": (-1.0, 10.0)})
    kinematic = ElasticityCell(
        problem.cell, {"matrix": (1.0, 0.3), "inclusion": (2.0, 0.3)}, bc="kinematic"
    )
    with pytest.raises(ValueError, match="periodic"):
        ReducedBasis.train(kinematic, elasticity_ranges())
    kinematic.destroy()


def test_evaluate_many_rejects_bad_values(square):
    _, rb = square
    params = np.array([[[1.0], [2.0]], [[1.0], [-3.0]]])
    with pytest.raises(ValueError, match="sample 1, phase 'inclusion'.*positive"):
        rb.evaluate_many(params)
    with pytest.raises(ValueError, match="shape"):
        rb.evaluate_many(np.ones((3, 2)))


def test_enrich_certifies_the_new_snapshot_and_survives_a_file(square, tmp_path):
    """A snapshot added after training: the bound at its parameter drops to round-off and
    stays rigorous elsewhere; a basis saved with its vectors, loaded and attached to the
    cell grows bitwise as the original; one saved without them refuses to grow."""
    problem, _ = square
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # max_size reached: meant
        coarse = ReducedBasis.train(problem, CONTRAST, tolerance=1e-9, max_size=2)
    assert coarse.can_enrich and not coarse.attached
    path = tmp_path / "coarse.npz"
    coarse.save(path)
    # The worst contrast of a scan: where the coarse basis is least certified.
    scan = np.logspace(0.0, 3.0, 61)
    worst = np.argmax(
        [coarse.evaluate({"matrix": 1.0, "inclusion": k}).relative_error_bound for k in scan]
    )
    values = {"matrix": 1.0, "inclusion": float(scan[worst])}
    params = coarse.parameters(values)
    assert coarse.evaluate(values).relative_error_bound > 1e-5
    coarse.attach(problem)
    X, T = coarse.truth_correctors(params)
    np.testing.assert_allclose(T, problem.effective_tensor(values), rtol=0, atol=1e-12)
    assert coarse.enrich([X], params[None]) == 2
    after = coarse.evaluate(values)
    # At the snapshot's own parameter the bound is down to its floating-point floor.
    assert after.error_bound <= 1.5 * after.rounding_bound and after.relative_error_bound < 1e-9
    rng = np.random.default_rng(3)
    for k in rng.uniform(1.0, 1000.0, 5):
        other = {"matrix": 1.0, "inclusion": float(k)}
        check_certified(
            coarse.evaluate(other).tensor,
            problem.effective_tensor(other),
            coarse.evaluate(other),
            other,
        )
    again = ReducedBasis.load(path, problem)
    again.attach(problem)
    again.enrich([again.truth_correctors(params)[0]], params[None])
    np.testing.assert_array_equal(again.evaluate(values).tensor, after.tensor)
    np.testing.assert_array_equal(again.evaluate(values).bound, after.bound)
    coarse.detach()
    again.detach()
    coarse.save(path, basis=False)
    frozen = ReducedBasis.load(path, problem)
    assert not frozen.can_enrich
    with pytest.raises(ValueError, match="no basis vectors"):
        frozen.attach(problem)


# -- the Stokes cell under an affine stretch ------------------------------------------------------
def _stretched_square(s, mesh_size):
    """The square cell (solid fraction 0.2) stretched to the box ``s_x x s_y``: an independent
    full cell (its own mesh, periodic maps and Stokes solve), no affine decomposition."""
    import dataclasses

    cell = cells.square(0.2, mesh_size=mesh_size)
    cell.mesh.geometry.x[:, 0] *= s[0]
    cell.mesh.geometry.x[:, 1] *= s[1]
    return dataclasses.replace(cell, lengths=(float(s[0]), float(s[1])))


def test_stokes_stretch_is_certified_against_stretched_cells():
    """Rectangular cells with elliptic pores (the unit square cell stretched by 0.5-2 in x
    and y): the reduced permeability is below the full Stokes solve on the stretched mesh
    and within the certified bound in the Loewner order (0 <= k - k_N <= B), with the
    effectivity between 1 and its a-priori bound; the unstretched cell gives the cell's own k."""
    from hmm_fem.cells import PermeabilityCell

    h = 0.15
    reference = PermeabilityCell(cells.square(0.2, mesh_size=h))
    ranges = {"stretch": {"sx": (0.5, 2.0), "sy": (0.5, 2.0)}}
    rb = ReducedBasis.train(reference, ranges, tolerance=1e-6, training_size=48)
    assert rb.kind == "stokes" and rb.converged
    same = rb.evaluate({"stretch": (1.0, 1.0)})
    k = reference.permeability()
    assert np.abs(same.tensor - k).max() <= same.error_bound + 1e-14
    rng = np.random.default_rng(2)
    effectivities = []
    for _ in range(6):
        s = np.exp(rng.uniform(np.log(0.5), np.log(2.0), 2))
        full = PermeabilityCell(_stretched_square(s, h))
        k = full.permeability()
        full.destroy()
        result = rb.evaluate({"stretch": tuple(s)})
        E = k - result.tensor  # the reduced basis underestimates the compliance
        rounding = 1e-12 * np.abs(k).max()
        assert np.linalg.eigvalsh(E)[0] >= -rounding, s
        assert np.linalg.eigvalsh(result.bound - E)[0] >= -rounding, s
        err = np.linalg.norm(E, 2)
        assert err <= result.error_bound + rounding
        assert err <= result.relative_error_bound * np.linalg.norm(k, 2) + rounding
        if err > 100 * rounding:
            effectivities.append(result.error_bound / err)
            assert effectivities[-1] <= result.effectivity_bound * (1 + 1e-6)
    assert len(effectivities) >= 3 and min(effectivities) >= 1.0
    with pytest.raises(ValueError, match="2 positive stretch factors"):
        rb.evaluate({"stretch": (1.0, -1.0)})
    reference.destroy()
