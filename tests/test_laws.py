"""Temperature laws: values and exact derivatives."""

import numpy as np
import pytest

from hmm_fem.materials.laws import ArrheniusLaw, ConstantLaw, LinearLaw, as_law


@pytest.mark.parametrize(
    "law",
    [
        LinearLaw(2.0, 0.01, T0=300.0),
        LinearLaw(np.array([[2.0, 0.1], [0.1, 1.0]]), -0.002, T0=20.0),
        ArrheniusLaw(5.0, activation_temperature=1500.0, T_ref=300.0),
        ConstantLaw(3.0),
    ],
    ids=["linear", "linear-tensor", "arrhenius", "constant"],
)
def test_derivative_matches_central_differences(law):
    T = np.array([280.0, 300.0, 350.0])
    h = 1e-3
    fd = (law.value(T + h) - law.value(T - h)) / (2 * h)
    assert np.allclose(law.derivative(T), fd, rtol=1e-7, atol=1e-12)
    assert law.value(T).shape == T.shape + np.shape(law.value(300.0))


def test_reference_values():
    assert np.isclose(LinearLaw(2.0, 0.01, T0=300.0).value(310.0), 2.2)
    assert np.isclose(ArrheniusLaw(5.0, 1500.0, 300.0).value(300.0), 5.0)
    assert as_law(4.0).value(1.0) == 4.0 and not as_law(4.0).depends_on_temperature


def test_arrhenius_needs_an_absolute_temperature():
    with pytest.raises(ValueError, match="T_ref"):
        ArrheniusLaw(1.0, 100.0, T_ref=0.0)
