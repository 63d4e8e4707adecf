"""The reference formulas themselves, against published values and each other."""

import numpy as np
import pytest

from hmm_fem import references


@pytest.mark.parametrize("f, value", sorted(references.PERRINS_CONTRAST_10.items()))
def test_perrins_formula_reproduces_published_values(f, value):
    assert abs(references.perrins_square_array(1.0, 10.0, f) / value - 1) < 5e-6


def test_perrins_formula_perfect_conductor_limit():
    # Perrins et al.: 3.080177 from the fit at f = 0.5, s -> infinity (exact 3.080198).
    assert abs(references.perrins_square_array(1.0, 1e12, 0.5) - 3.080177) < 2e-6


@pytest.mark.parametrize("dim", [2, 3])
def test_maxwell_garnett_is_the_hashin_shtrikman_bound_of_the_matrix_side(dim):
    lower, upper = references.hashin_shtrikman_bounds(1.0, 10.0, 0.3, dim)
    assert np.isclose(references.maxwell_garnett(1.0, 10.0, 0.3, dim), lower)
    assert np.isclose(references.maxwell_garnett(10.0, 1.0, 0.7, dim), upper)


def test_bounds_are_ordered_and_tight_at_the_ends():
    for f in (0.0, 0.2, 0.8, 1.0):
        lo, hi = references.hashin_shtrikman_bounds(2.0, 5.0, f, 2)
        assert references.harmonic_mean(2.0, 5.0, f) - 1e-12 <= lo <= hi
        assert hi <= references.arithmetic_mean(2.0, 5.0, f) + 1e-12
    assert np.isclose(references.hashin_shtrikman_bounds(2.0, 5.0, 0.0, 2)[0], 2.0)


def test_trace_margins_vanish_on_the_isotropic_bounds():
    lo, hi = references.hashin_shtrikman_bounds(1.0, 10.0, 0.4, 2)
    assert abs(references.hashin_shtrikman_trace_margins(lo * np.eye(2), 1.0, 10.0, 0.4)[0]) < 1e-12
    assert abs(references.hashin_shtrikman_trace_margins(hi * np.eye(2), 1.0, 10.0, 0.4)[1]) < 1e-12
    # A laminate attains the trace bounds (it is a rank-1 laminate) and lies outside the
    # isotropic interval in one direction: the trace form is what applies to it.
    laminate = references.laminate_conductivity(1.0, 10.0, 0.4, 2)
    margins = references.hashin_shtrikman_trace_margins(laminate, 1.0, 10.0, 0.4)
    assert min(margins) > -1e-12 and min(margins) < 1e-12


def test_backus_reproduces_the_published_laminate():
    C = references.backus_laminate([1.0, 10.0], [0.3, 0.2], [0.5, 0.5])
    published = {
        (0, 0): 6.034217,
        (0, 1): 1.482935,
        (0, 2): 0.814751,
        (2, 2): 2.401372,
        (3, 3): 0.704225,
        (5, 5): 2.275641,
    }
    for (i, j), value in published.items():
        assert abs(C[i, j] - value) < 1e-6


def test_backus_of_one_material_is_that_material():
    from hmm_fem.voigt import isotropic_stiffness

    C = references.backus_laminate([3.0, 3.0], [0.25, 0.25], [0.3, 0.7])
    assert np.allclose(C, isotropic_stiffness(3.0, 0.25, 3), rtol=1e-12)


def test_hill_reduces_to_the_phase_modulus_and_is_bounded():
    assert np.isclose(references.hill_equal_shear_bulk([2.0, 2.0], 1.0, [0.4, 0.6]), 2.0)
    K = references.hill_equal_shear_bulk([1.0, 10.0], 0.7, [0.5, 0.5])
    assert 1 / (0.5 / 1.0 + 0.5 / 10.0) < K < 0.5 * (1.0 + 10.0)


def test_square_lattice_sums_against_direct_summation():
    # S_8, S_12 from the recurrence (which starts from the closed form of S_4) against the
    # absolutely convergent sums over |p|, |q| <= 60 (tails below 1e-10).
    p, q = np.meshgrid(np.arange(-60, 61), np.arange(-60, 61))
    z = (p + 1j * q).ravel()
    z = z[z != 0]
    sums = references.square_lattice_sums(12)
    assert set(sums) == {4, 8, 12}
    for n in (8, 12):
        assert abs(sums[n] - np.sum(z**-n).real) < 1e-10
    assert abs(np.sum(z**-6)) < 1e-12  # only multiples of 4 survive the square symmetry


@pytest.mark.parametrize("f", sorted(references.PERRINS_CONTRAST_10))
def test_rayleigh_multipoles_reproduce_the_published_table(f):
    # The table is printed to 6 decimals.
    value = references.rayleigh_square_array(1.0, 10.0, f)
    assert abs(value - references.PERRINS_CONTRAST_10[f]) <= 5e-7


def test_rayleigh_multipoles_limits_and_convergence():
    # Perfect conductors at f = 0.5: 3.080198 (Perrins et al. 1979, Table 1).
    assert abs(references.rayleigh_square_array(1.0, 1e15, 0.5) - 3.080198) < 5e-7
    # Converged in the number of multipoles; B_1 alone is 1 - 2f/(T + f).
    fine = references.rayleigh_square_array(1.0, 10.0, 0.7, order=81)
    assert references.rayleigh_square_array(1.0, 10.0, 0.7) == pytest.approx(fine, rel=1e-14)
    T = (1 + 10.0) / (1 - 10.0)
    assert references.rayleigh_square_array(1.0, 10.0, 0.5, order=1) == pytest.approx(
        1 - 2 * 0.5 / (T + 0.5), rel=1e-14
    )
    # Dilute limit: the first correction is O(f^4) (Perrins' 0.305827 f^4 T / T^2 term).
    f = 0.01
    dilute = 1 - 2 * f / (T + f)
    assert abs(references.rayleigh_square_array(1.0, 10.0, f) - dilute) < 1e-7
    assert references.rayleigh_square_array(2.0, 2.0, 0.3) == 2.0
    with pytest.raises(ValueError, match="pi/4"):
        references.rayleigh_square_array(1.0, 10.0, 0.8)
