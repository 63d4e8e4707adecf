"""The J2 elastoplastic law at material points against closed forms and differences.

Closed forms (mu = E / (2 (1 + nu)), K = E / (3 (1 - 2 nu)), H = H_iso, Hk = H_kin; alpha
the equivalent plastic strain; f = ||dev sigma - beta|| - sqrt(2/3) (sigma_y + H alpha)).

For a strain path that stays along one fixed deviatoric direction N (unit norm) the plastic
strain, the back stress and dev sigma all stay along N: the trial deviator minus the back
stress is parallel to N, so radial return is exact whatever the increment (for linear
hardening the answer is the same in one increment or many). Writing the plastic strain
eps_p = (3/2)^(1/2) alpha N (monotonic, so ||eps_p|| = sqrt(3/2) alpha) and beta =
(2/3) Hk eps_p, the consistency condition f = 0 is linear in alpha.

* Uniaxial strain eps = diag(e, 0, 0): dev eps = e (2/3, -1/3, -1/3), N along (2, -1, -1),
  eps_p = alpha (1, -1/2, -1/2) sign(e), beta = Hk alpha (2/3, -1/3, -1/3) sign(e). The
  von Mises norm of a (2/3, -1/3, -1/3) is |a|, so f = 0 reads
  2 mu |e| - 3 mu alpha - Hk alpha = sigma_y + H alpha:

      alpha = max(0, (2 mu |e| - sigma_y) / (3 mu + H + Hk))   (yield at |e| = sigma_y / 2 mu)
      q = s_xx - s_yy = sign(e) (2 mu |e| - 3 mu alpha)
      s_xx = K e + 2 q / 3,   s_yy = s_zz = K e - q / 3          (lateral stresses)

* Simple shear, engineering shear gamma = 2 e_xy: tau = s_xy = mu (gamma - gamma_p),
  gamma_p = sqrt(3) alpha sign(gamma), beta_xy = Hk alpha sign(gamma) / sqrt(3), von Mises
  stress sqrt(3) |tau - beta_xy|:

      alpha = max(0, (sqrt(3) mu |gamma| - sigma_y) / (3 mu + H + Hk))
      (yield at tau = sigma_y / sqrt(3), gamma = sigma_y / (sqrt(3) mu))
      tau = mu (gamma - gamma_p),   all other stresses zero.

* A shear path of monotonic segments: on a segment of direction s = +-1 that starts from
  (gamma_p0, beta0, alpha0), the point is elastic, tau = mu (gamma - gamma_p0), while
  s sqrt(3) (tau - beta0) <= sigma_y + H alpha0; beyond, with d = alpha - alpha0,
  gamma_p = gamma_p0 + s sqrt(3) d, beta = beta0 + s Hk d / sqrt(3) and f = 0 gives

      d = (s sqrt(3) (mu (gamma - gamma_p0) - beta0) - sigma_y - H alpha0) / (3 mu + H + Hk).

  After loading to gamma_max (alpha_1 from the monotonic formula, tau_max, beta_1 =
  Hk alpha_1 / sqrt(3)): unloading is elastic, the stress vanishes at the residual plastic
  shear gamma_p = sqrt(3) alpha_1 and reverse yielding starts at
  tau_rev = beta_1 - (sigma_y + H alpha_1) / sqrt(3): -tau_max with isotropic hardening,
  tau_max - 2 sigma_y / sqrt(3) with kinematic hardening only (Bauschinger effect).
"""

import numpy as np
import pytest

from hmm_fem import voigt
from hmm_fem.materials import J2Plasticity, integrate_strain_path

E, NU, SIGMA_Y = 210e3, 0.29, 240.0
MU = E / (2.0 * (1.0 + NU))
KAPPA = E / (3.0 * (1.0 - 2.0 * NU))
SQRT3 = np.sqrt(3.0)
#: (H_iso, H_kin): isotropic only, kinematic only, mixed, perfectly plastic.
HARDENINGS = {
    "isotropic": (12e3, 0.0),
    "kinematic": (0.0, 8e3),
    "mixed": (12e3, 8e3),
    "perfect": (0.0, 0.0),
}
RTOL = 1e-10


def make_law(hardening, dim=3):
    H, Hk = HARDENINGS[hardening]
    return J2Plasticity(E, NU, SIGMA_Y, isotropic_hardening=H, kinematic_hardening=Hk, dim=dim)


def assert_close(actual, expected, scale, rtol=RTOL):
    error = np.abs(np.asarray(actual) - np.asarray(expected)).max()
    assert error <= rtol * scale, f"error {error:.3e} > {rtol:.1e} * {scale:.3e}"


def uniaxial_strain_reference(e, hardening):
    """Closed form of the module docstring at strains ``e`` (monotonic from zero)."""
    H, Hk = HARDENINGS[hardening]
    e = np.asarray(e, dtype=float)
    sign = np.sign(e)
    alpha = np.maximum(0.0, (2.0 * MU * np.abs(e) - SIGMA_Y) / (3.0 * MU + H + Hk))
    q = sign * (2.0 * MU * np.abs(e) - 3.0 * MU * alpha)
    stress = np.zeros(e.shape + (6,))
    stress[..., 0] = KAPPA * e + 2.0 * q / 3.0
    stress[..., 1] = stress[..., 2] = KAPPA * e - q / 3.0
    plastic = np.zeros(e.shape + (6,))
    plastic[..., 0] = sign * alpha
    plastic[..., 1] = plastic[..., 2] = -0.5 * sign * alpha
    back = np.zeros(e.shape + (6,))
    back[..., 0] = 2.0 / 3.0 * Hk * sign * alpha
    back[..., 1] = back[..., 2] = -1.0 / 3.0 * Hk * sign * alpha
    return stress, plastic, back, alpha


def shear_reference(gamma, hardening):
    """Monotonic simple shear from the virgin state: (tau, gamma_p, beta_xy, alpha)."""
    H, Hk = HARDENINGS[hardening]
    gamma = np.asarray(gamma, dtype=float)
    sign = np.sign(gamma)
    alpha = np.maximum(0.0, (SQRT3 * MU * np.abs(gamma) - SIGMA_Y) / (3.0 * MU + H + Hk))
    gamma_p = SQRT3 * alpha * sign
    return MU * (gamma - gamma_p), gamma_p, Hk * alpha * sign / SQRT3, alpha


def shear_segments_reference(turning_points, per_segment, hardening):
    """Piecewise closed form along monotonic shear segments between ``turning_points``.

    Returns the sampled shears and (tau, gamma_p, beta_xy, alpha) at each sample; every
    segment is evaluated from the state at its start, itself the closed form at the end
    of the previous segment.
    """
    H, Hk = HARDENINGS[hardening]
    gp0, b0, a0 = 0.0, 0.0, 0.0
    gammas, rows = [], []
    for start, end in zip(turning_points[:-1], turning_points[1:]):
        s = np.sign(end - start)
        g = np.linspace(start, end, per_segment + 1)[1:]
        d = (s * SQRT3 * (MU * (g - gp0) - b0) - SIGMA_Y - H * a0) / (3.0 * MU + H + Hk)
        d = np.maximum(d, 0.0)  # grows along the segment: elastic first, then plastic
        gp = gp0 + s * SQRT3 * d
        b = b0 + s * Hk * d / SQRT3
        a = a0 + d
        gammas.append(g)
        rows.append(np.stack([MU * (g - gp), gp, b, a], axis=1))
        gp0, b0, a0 = gp[-1], b[-1], a[-1]
    return np.concatenate(gammas), np.concatenate(rows)


def shear_strains(gamma, dim=3):
    gamma = np.atleast_1d(np.asarray(gamma, dtype=float))
    strains = np.zeros(gamma.shape + (6 if dim == 3 else 3,))
    strains[..., -1] = gamma
    return strains


def uniaxial_strains(e, dim=3):
    e = np.atleast_1d(np.asarray(e, dtype=float))
    strains = np.zeros(e.shape + (6 if dim == 3 else 3,))
    strains[..., 0] = e
    return strains


# --- monotonic closed forms -----------------------------------------------------------


@pytest.mark.parametrize("hardening", list(HARDENINGS))
@pytest.mark.parametrize("dim", [3, 2])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_uniaxial_strain_closed_form(hardening, dim, sign):
    law = make_law(hardening, dim)
    e_yield = SIGMA_Y / (2.0 * MU)
    # Elastic, just past yield and well into the plastic range, in 7 increments.
    e = sign * e_yield * np.array([0.4, 0.9, 1.3, 1.8, 2.5, 3.7, 5.0])
    path = integrate_strain_path(law, uniaxial_strains(e, dim))
    stress, plastic, back, alpha = uniaxial_strain_reference(e, hardening)
    scale = np.abs(stress).max()
    assert_close(path.stress_3d, stress, scale)
    in_plane = [0, 1, 5] if dim == 2 else slice(None)
    assert_close(path.stress, stress[:, in_plane], scale)
    assert_close(path.plastic_strain, plastic, np.abs(e).max())
    assert_close(path.back_stress, back, scale)
    assert_close(path.equivalent_plastic_strain, alpha, np.abs(e).max())
    np.testing.assert_array_equal(path.yielded, np.abs(e) > e_yield)
    # The lateral stresses: s_yy = s_zz = K e - q/3 (in plane strain, s_zz is output).
    if dim == 2:
        response = law.return_mapping(uniaxial_strains(e[-1:], dim), law.initial_state(1))
        assert_close(response.stress_zz, stress[-1:, 2], scale)
    # One increment gives the same to round-off (radial return is exact on this path).
    one = law.return_mapping(uniaxial_strains(e[-1:], dim), law.initial_state(1))
    assert_close(one.stress_3d[0], path.stress_3d[-1], scale, rtol=1e-12)
    assert_close(one.state["plastic_strain"][0], path.plastic_strain[-1], abs(e[-1]), 1e-12)
    assert_close(
        one.state["equivalent_plastic_strain"],
        path.equivalent_plastic_strain[-1:],
        abs(e[-1]),
        1e-12,
    )


@pytest.mark.parametrize("hardening", list(HARDENINGS))
@pytest.mark.parametrize("dim", [3, 2])
def test_simple_shear_closed_form(hardening, dim):
    law = make_law(hardening, dim)
    gamma_yield = SIGMA_Y / (SQRT3 * MU)
    gamma = gamma_yield * np.array([0.5, 0.99, 1.01, 1.6, 2.4, 4.0, 6.5])
    path = integrate_strain_path(law, shear_strains(gamma, dim))
    tau, gamma_p, beta, alpha = shear_reference(gamma, hardening)
    scale = np.abs(tau).max()
    expected = np.zeros((gamma.size, 6))
    expected[:, 5] = tau
    assert_close(path.stress_3d, expected, scale)  # no normal stresses in simple shear
    assert_close(path.stress[:, -1], tau, scale)
    assert_close(path.plastic_strain[:, 5], gamma_p, gamma.max())
    assert_close(path.plastic_strain[:, :5], 0.0, gamma.max())
    assert_close(path.back_stress[:, 5], beta, scale)
    assert_close(path.equivalent_plastic_strain, alpha, gamma.max())
    np.testing.assert_array_equal(path.yielded, gamma > gamma_yield)
    one = law.return_mapping(shear_strains(gamma[-1], dim), law.initial_state(1))
    assert_close(one.stress_3d[0], path.stress_3d[-1], scale, rtol=1e-12)
    assert_close(one.state["plastic_strain"][0], path.plastic_strain[-1], gamma[-1], 1e-12)


def test_hardening_slopes_in_shear():
    """Plastic slope d tau / d gamma = mu (H + Hk) / (3 mu + H + Hk); zero if perfect."""
    gamma_yield = SIGMA_Y / (SQRT3 * MU)
    for hardening, (H, Hk) in HARDENINGS.items():
        law = make_law(hardening)
        gamma = gamma_yield * np.array([3.0, 4.0])
        tau = integrate_strain_path(law, shear_strains(gamma)).stress[:, 5]
        slope = (tau[1] - tau[0]) / (gamma[1] - gamma[0])
        assert slope == pytest.approx(MU * (H + Hk) / (3.0 * MU + H + Hk), rel=1e-9, abs=1e-9)


# --- load, unload, reload ---------------------------------------------------------------


@pytest.mark.parametrize("hardening", ["isotropic", "kinematic", "mixed"])
def test_unloading_residual_strain_and_reverse_yield(hardening):
    H, Hk = HARDENINGS[hardening]
    law = make_law(hardening)
    gamma_yield = SIGMA_Y / (SQRT3 * MU)
    gamma_max = 4.0 * gamma_yield
    tau_max, _, beta_1, alpha_1 = shear_reference(gamma_max, hardening)
    gamma_residual = SQRT3 * alpha_1  # where the stress vanishes on unloading
    tau_reverse = beta_1 - (SIGMA_Y + H * alpha_1) / SQRT3
    gamma_reverse = gamma_max - (tau_max - tau_reverse) / MU
    loaded = law.return_mapping(shear_strains(gamma_max), law.initial_state(1)).state

    # Unloading to zero stress: elastic, all stresses zero, the residual plastic shear.
    unloaded = law.return_mapping(shear_strains(gamma_residual), loaded)
    assert not unloaded.yielded[0]
    assert_close(unloaded.stress_3d, 0.0, tau_max)
    assert_close(unloaded.state["plastic_strain"][0, 5], gamma_residual, gamma_max)
    np.testing.assert_array_equal(unloaded.state["plastic_strain"], loaded["plastic_strain"])

    # Reverse yielding exactly at tau_reverse: elastic just before, plastic just after.
    before = law.return_mapping(shear_strains(gamma_reverse + 1e-9 * gamma_yield), loaded)
    after = law.return_mapping(shear_strains(gamma_reverse - 1e-6 * gamma_yield), loaded)
    assert not before.yielded[0] and after.yielded[0]
    assert_close(before.stress[0, 5], tau_reverse, tau_max, rtol=1e-8)
    if Hk == 0.0:
        assert tau_reverse == pytest.approx(-tau_max, rel=1e-12)  # no Bauschinger effect
    if H == 0.0:
        assert tau_reverse == pytest.approx(tau_max - 2.0 * SIGMA_Y / SQRT3, rel=1e-12)
    if Hk > 0.0:
        assert abs(tau_reverse) < tau_max - 1.0  # Bauschinger: earlier reverse yielding

    # Reloading after unloading to zero stress: elastic up to gamma_max, then the
    # monotonic curve again (the state remembers the previous maximum).
    reload = np.concatenate([[gamma_residual], np.linspace(gamma_residual, gamma_max, 6)[1:-1]])
    path = integrate_strain_path(law, shear_strains(reload), state=loaded)
    assert not path.yielded.any()
    assert_close(path.stress[:, 5], MU * (reload - gamma_residual), tau_max)
    beyond = np.array([1.05, 1.5, 2.0]) * gamma_max
    path = integrate_strain_path(law, shear_strains(beyond), state=path.state)
    assert path.yielded.all()
    assert_close(path.stress[:, 5], shear_reference(beyond, hardening)[0], tau_max)


@pytest.mark.parametrize("hardening", list(HARDENINGS))
@pytest.mark.parametrize("increments", [8, 1])
def test_shear_hysteresis_loop(hardening, increments):
    """Two full cycles +-gamma_max against the piecewise closed form, point by point.

    With one increment per segment, each turning point is reached in a single radial
    return across the elastic range and into reverse plasticity: exact as well.
    """
    law = make_law(hardening)
    gamma_max = 3.0 * SIGMA_Y / (SQRT3 * MU)
    turning = [0.0, gamma_max, -gamma_max, gamma_max, -gamma_max]
    gamma, expected = shear_segments_reference(turning, 8, hardening)
    stride = 8 // increments
    path = integrate_strain_path(law, shear_strains(gamma[stride - 1 :: stride]))
    expected = expected[stride - 1 :: stride]
    scale = np.abs(expected[:, 0]).max()
    assert_close(path.stress[:, 5], expected[:, 0], scale)
    assert_close(path.plastic_strain[:, 5], expected[:, 1], gamma_max)
    assert_close(path.back_stress[:, 5], expected[:, 2], scale)
    assert_close(path.equivalent_plastic_strain, expected[:, 3], gamma_max)
    # The loop: peak stresses of the cycles. Kinematic (and perfect) hardening repeat the
    # same loop; isotropic hardening raises the peak at every reversal.
    peaks = path.stress[increments - 1 :: increments, 5]
    assert peaks.size == 4
    if hardening in ("kinematic", "perfect"):
        assert_close(np.abs(peaks), abs(peaks[0]), scale)
    else:
        assert np.all(np.diff(np.abs(peaks)) > 1.0)


def test_segment_reference_is_monotonic_reference():
    """The two shear references agree on a monotonic path (checks the test itself)."""
    for hardening in HARDENINGS:
        gamma, rows = shear_segments_reference([0.0, 0.01], 10, hardening)
        np.testing.assert_allclose(rows, np.stack(shear_reference(gamma, hardening), 1), 1e-12)


# --- consistency, normality, incompressibility -------------------------------------------


def random_committed_state(law, n, rng, steps=3, scale=4e-3):
    """A committed state reached by a random non-proportional strain path."""
    k = law.strain_size
    path = np.cumsum(rng.normal(scale=scale, size=(steps, n, k)), axis=0)
    return integrate_strain_path(law, path).state, path[-1]


@pytest.mark.parametrize("hardening", list(HARDENINGS))
@pytest.mark.parametrize("dim", [3, 2])
def test_consistency_normality_incompressibility(hardening, dim):
    rng = np.random.default_rng(7)
    law = make_law(hardening, dim)
    state, last = random_committed_state(law, 400, rng)
    committed = {key: value.copy() for key, value in state.items()}
    strain = last + rng.normal(scale=2e-3, size=last.shape)
    response = law.return_mapping(strain, state)
    yielded = response.yielded
    assert 0 < yielded.sum() < yielded.size  # both kinds of points are tested
    new = response.state
    f = law.yield_function(response.stress_3d, new["back_stress"], new["equivalent_plastic_strain"])
    # f = 0 on the yield surface to round-off of the trial stress, < 0 inside.
    trial_scale = 2.0 * MU * np.abs(strain).max()
    assert np.abs(f[yielded]).max() <= 1e-13 * trial_scale
    assert f[~yielded].max() < 0.0
    # Plastic incompressibility.
    plastic = voigt.voigt_to_strain(new["plastic_strain"])
    assert np.abs(np.trace(plastic, axis1=1, axis2=2)).max() <= 1e-15
    # Normality: the plastic strain increment is parallel to dev(sigma) - beta, with
    # ||d eps_p|| = sqrt(3/2) d alpha.
    increment = plastic - voigt.voigt_to_strain(committed["plastic_strain"])
    relative = voigt.voigt_to_stress(response.stress_3d - new["back_stress"])
    relative -= np.trace(relative, axis1=1, axis2=2)[:, None, None] * np.eye(3) / 3.0
    direction = relative / np.linalg.norm(relative, axis=(1, 2))[:, None, None]
    d_alpha = new["equivalent_plastic_strain"] - committed["equivalent_plastic_strain"]
    expected = np.sqrt(1.5) * d_alpha[:, None, None] * direction
    assert_close(increment[yielded], expected[yielded], np.abs(increment).max(), 1e-12)
    # Elastic points keep their internal variables bit for bit; d alpha >= 0.
    for key in law.STATE_SHAPES:
        np.testing.assert_array_equal(new[key][~yielded], committed[key][~yielded])
    assert np.all(d_alpha[yielded] > 0.0)
    # The committed state was not touched.
    for key in law.STATE_SHAPES:
        np.testing.assert_array_equal(state[key], committed[key])
    # Plane strain: no out-of-plane shears anywhere.
    if dim == 2:
        for key in ("plastic_strain", "back_stress"):
            assert np.all(new[key][:, 3:5] == 0.0)
        assert np.all(response.stress_3d[:, 3:5] == 0.0)


# --- algorithmic tangent -----------------------------------------------------------------


def central_difference_tangent(law, strain, state, h):
    k = law.strain_size
    columns = []
    for j in range(k):
        step = np.zeros(k)
        step[j] = h
        plus = law.return_mapping(strain + step, state, tangent=False).stress
        minus = law.return_mapping(strain - step, state, tangent=False).stress
        columns.append((plus - minus) / (2.0 * h))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("hardening", list(HARDENINGS))
@pytest.mark.parametrize("dim", [3, 2])
def test_tangent_against_central_differences(hardening, dim):
    """Preload in uniaxial strain, then a non-proportional increment (shear + yy)."""
    law = make_law(hardening, dim)
    k = law.strain_size
    e_yield = SIGMA_Y / (2.0 * MU)
    preload = np.zeros((4, k))
    preload[:, 0] = 3.0 * e_yield
    state = law.return_mapping(preload, law.initial_state(4)).state
    strain = preload.copy()
    # Plastic: further loading plus shear and yy; elastic: unloading, and unloading
    # with a small shear; one more plastic point in the opposite shear direction.
    strain[0, 1], strain[0, -1] = 0.8 * e_yield, 2.0 * e_yield
    strain[1, 0] = 2.0 * e_yield
    strain[2, 0], strain[2, -1] = 2.5 * e_yield, 0.3 * e_yield
    strain[3, 1], strain[3, -1] = -1.2 * e_yield, -3.0 * e_yield
    response = law.return_mapping(strain, state)
    np.testing.assert_array_equal(response.yielded, [True, False, False, True])
    numeric = central_difference_tangent(law, strain, state, h=1e-6 * e_yield)
    assert_close(response.tangent, numeric, np.abs(response.tangent).max(), 1e-6)
    # Symmetric (associative flow), elastic stiffness at the elastic points.
    assert_close(response.tangent, response.tangent.transpose(0, 2, 1), E, 1e-14)
    elastic = voigt.isotropic_stiffness(E, NU, dim=dim)
    assert_close(response.tangent[~response.yielded], elastic, E, 1e-14)
    np.testing.assert_allclose(law.elastic_stiffness(), elastic, rtol=1e-14, atol=1e-9)


def test_plane_strain_is_the_3d_law_at_zero_out_of_plane_strain():
    rng = np.random.default_rng(3)
    law3, law2 = make_law("mixed", 3), make_law("mixed", 2)
    state, _ = random_committed_state(law2, 50, rng)
    strain2 = rng.normal(scale=4e-3, size=(50, 3))
    strain3 = np.zeros((50, 6))
    strain3[:, [0, 1, 5]] = strain2
    r2, r3 = law2.return_mapping(strain2, state), law3.return_mapping(strain3, state)
    assert_close(r2.stress_3d, r3.stress_3d, np.abs(r3.stress_3d).max(), 1e-14)
    assert_close(r2.stress, r3.stress[:, [0, 1, 5]], np.abs(r3.stress_3d).max(), 1e-14)
    assert_close(r2.tangent, r3.tangent[:, [0, 1, 5]][:, :, [0, 1, 5]], E, 1e-14)
    for key in law2.STATE_SHAPES:
        np.testing.assert_array_equal(r2.state[key], r3.state[key])


# --- isotropy --------------------------------------------------------------------------------


def test_rotating_the_strain_and_state_rotates_the_answer():
    rng = np.random.default_rng(11)
    law = make_law("mixed")
    n = 20
    state, last = random_committed_state(law, n, rng)
    strain = last + rng.normal(scale=2e-3, size=last.shape)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))

    def rotate_strain(v):
        return voigt.strain_to_voigt(rotation @ voigt.voigt_to_strain(v) @ rotation.T)

    def rotate_stress(v):
        return voigt.stress_to_voigt(rotation @ voigt.voigt_to_stress(v) @ rotation.T)

    rotated_state = {
        "plastic_strain": rotate_strain(state["plastic_strain"]),
        "back_stress": rotate_stress(state["back_stress"]),
        "equivalent_plastic_strain": state["equivalent_plastic_strain"],
    }
    base = law.return_mapping(strain, state)
    turned = law.return_mapping(rotate_strain(strain), rotated_state)
    scale = np.abs(base.stress).max()
    assert base.yielded.any() and not base.yielded.all()
    np.testing.assert_array_equal(turned.yielded, base.yielded)
    assert_close(turned.stress, rotate_stress(base.stress), scale, 1e-12)
    assert_close(
        turned.state["plastic_strain"],
        rotate_strain(base.state["plastic_strain"]),
        np.abs(strain).max(),
        1e-12,
    )
    tensor = voigt.stiffness_to_tensor(base.tangent)
    tensor = np.einsum("ai,bj,ck,dl,pijkl->pabcd", *(rotation,) * 4, tensor)
    assert_close(turned.tangent, voigt.tensor_to_stiffness(tensor), E, 1e-12)

    # From the virgin state, a rotated uniaxial strain gives the rotated closed form.
    e = 3.0 * SIGMA_Y / (2.0 * MU)
    response = law.return_mapping(rotate_strain(uniaxial_strains(e)), law.initial_state(1))
    stress = uniaxial_strain_reference(np.array([e]), "mixed")[0]
    assert_close(response.stress, rotate_stress(stress), np.abs(stress).max(), 1e-12)


# --- input checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(isotropic_hardening=-1.0), "isotropic_hardening must be >= 0"),
        (dict(kinematic_hardening=-1e-3), "kinematic_hardening must be >= 0"),
        (dict(nu=0.5), "Poisson ratio"),
        (dict(nu=-1.2), "Poisson ratio"),
        (dict(E=0.0), "Young's modulus must be positive"),
        (dict(E=np.nan), "not finite"),
        (dict(yield_stress=0.0), "yield_stress must be positive"),
        (dict(yield_stress=-5.0), "yield_stress must be positive"),
        (dict(yield_stress=np.inf), "yield_stress is not finite"),
        (dict(kinematic_hardening="hard"), "kinematic_hardening must be a real number"),
        (dict(dim=1), "dim=1 must be 3 or 2"),
    ],
)
def test_bad_parameters(kwargs, match):
    parameters = dict(E=E, nu=NU, yield_stress=SIGMA_Y)
    parameters.update(kwargs)
    with pytest.raises(ValueError, match=match):
        J2Plasticity(**parameters)


def test_bad_inputs():
    law, law2 = make_law("mixed"), make_law("mixed", 2)
    state = law.initial_state(2)
    with pytest.raises(ValueError, match=r"shape \(n, 6\).*got \(2, 3\)"):
        law.return_mapping(np.zeros((2, 3)), state)
    with pytest.raises(ValueError, match=r"shape \(n, 3\) \(plane strain"):
        law2.return_mapping(np.zeros((2, 6)), state)
    with pytest.raises(ValueError, match=r"got \(6,\); pass one point as strain\[None, :\]"):
        law.return_mapping(np.zeros(6), law.initial_state(1))
    bad = np.zeros((2, 6))
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match="not finite at 1 of 2 points.*point 1"):
        law.return_mapping(bad, state)
    with pytest.raises(ValueError, match=r"state\['back_stress'\] has shape \(3, 6\)"):
        law.return_mapping(np.zeros((2, 6)), {**state, "back_stress": np.zeros((3, 6))})
    with pytest.raises(ValueError, match="misses"):
        law.return_mapping(np.zeros((2, 6)), {"plastic_strain": np.zeros((2, 6))})
    with pytest.raises(ValueError, match="not finite"):
        law.return_mapping(
            np.zeros((2, 6)), {**state, "equivalent_plastic_strain": np.array([0.0, np.inf])}
        )
    with pytest.raises(ValueError, match="non-negative integer"):
        law.initial_state(-1)
    with pytest.raises(ValueError, match=r"\(m, 6\) or \(m, n, 6\)"):
        integrate_strain_path(law, np.zeros(6))


def test_initial_state_and_options():
    law = make_law("mixed")
    state = law.initial_state(5)
    assert {key: value.shape for key, value in state.items()} == {
        "plastic_strain": (5, 6),
        "back_stress": (5, 6),
        "equivalent_plastic_strain": (5,),
    }
    assert all(np.all(value == 0.0) for value in state.values())
    strain = uniaxial_strains(np.linspace(-3, 3, 5) * SIGMA_Y / (2 * MU))
    full, bare = law.return_mapping(strain, state), law.return_mapping(strain, state, False)
    assert bare.tangent is None
    np.testing.assert_array_equal(full.stress, bare.stress)
    assert "isotropic_hardening=12000.0" in repr(law)


# --- vectorisation ------------------------------------------------------------------------------


def test_many_points_in_one_call():
    """1e5 random points at once; a sample agrees with the same points one by one."""
    rng = np.random.default_rng(5)
    law = make_law("mixed")
    n = 100_000
    state = law.initial_state(n)
    plastic = rng.normal(scale=1e-3, size=(n, 6))
    plastic[:, :3] -= plastic[:, :3].mean(axis=1, keepdims=True)  # traceless
    state["plastic_strain"][:] = plastic
    state["equivalent_plastic_strain"][:] = rng.uniform(0.0, 2e-3, n)
    strain = plastic + rng.normal(scale=1e-3, size=(n, 6))
    response = law.return_mapping(strain, state)
    assert response.stress.shape == (n, 6) and response.tangent.shape == (n, 6, 6)
    assert response.stress.flags.c_contiguous and response.tangent.flags.c_contiguous
    assert 0.1 < response.yielded.mean() < 0.9
    assert np.all(np.isfinite(response.tangent))
    new = response.state
    f = law.yield_function(response.stress_3d, new["back_stress"], new["equivalent_plastic_strain"])
    assert np.abs(f[response.yielded]).max() <= 1e-12 * SIGMA_Y
    assert f[~response.yielded].max() < 0.0
    for p in rng.choice(n, 5, replace=False):
        one = law.return_mapping(strain[p : p + 1], {k: v[p : p + 1] for k, v in state.items()})
        # Equal up to the summation order of the norm (SIMD lanes differ with n).
        assert_close(one.stress[0], response.stress[p], SIGMA_Y, 1e-14)
        assert_close(one.tangent[0], response.tangent[p], E, 1e-14)


def test_the_strain_given_is_never_modified():
    """One 3D point: the transposed view of a single row is not a copy, and the law used to
    write through it into the caller's strain."""
    law = J2Plasticity(1.0, 0.3, 0.01, isotropic_hardening=0.1, dim=3)
    strain = np.array([[0.03, -0.01, 0.0, 0.002, 0.0, 0.004]])
    kept = strain.copy()
    law.return_mapping(strain, law.initial_state(1))
    assert np.array_equal(strain, kept)
