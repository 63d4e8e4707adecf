"""Temperature laws of phase properties, with their exact derivatives.

A law maps a temperature array to property values and derivatives, vectorised:
``law.value(T)`` and ``law.derivative(T)`` both have shape ``T.shape + property_shape``
(``()`` for an isotropic phase, ``(d, d)`` for a tensor). Any object with these two
methods and a ``depends_on_temperature`` flag can be used as a law.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ConstantLaw", "LinearLaw", "ArrheniusLaw", "as_law"]


class ConstantLaw:
    """A temperature-independent property (scalar or tensor).

    Args:
        value: The property: a scalar, or a ``d x d`` array.
    """

    depends_on_temperature = False

    def __init__(self, value):
        self._value = np.asarray(value, dtype=np.float64)

    def value(self, T) -> np.ndarray:
        """The property at temperatures ``T``."""
        T = np.asarray(T, dtype=np.float64)
        return np.broadcast_to(self._value, T.shape + self._value.shape).copy()

    def derivative(self, T) -> np.ndarray:
        """Zero."""
        T = np.asarray(T, dtype=np.float64)
        return np.zeros(T.shape + self._value.shape)

    def __repr__(self):
        return f"ConstantLaw({self._value.tolist()})"


class LinearLaw:
    """``k(T) = k0 (1 + beta (T - T0))``.

    Args:
        k0: Property at the reference temperature (scalar or ``d x d``).
        beta: Temperature coefficient, in 1/K (1/unit of T).
        T0: Reference temperature.
    """

    depends_on_temperature = True

    def __init__(self, k0, beta: float, T0: float = 0.0):
        self.k0 = np.asarray(k0, dtype=np.float64)
        self.beta = float(beta)
        self.T0 = float(T0)

    def value(self, T) -> np.ndarray:
        """``k0 (1 + beta (T - T0))``."""
        factor = 1.0 + self.beta * (np.asarray(T, dtype=np.float64) - self.T0)
        return np.multiply.outer(factor, self.k0)

    def derivative(self, T) -> np.ndarray:
        """``k0 beta``."""
        T = np.asarray(T, dtype=np.float64)
        return np.multiply.outer(np.full(T.shape, self.beta), self.k0)

    def __repr__(self):
        return f"LinearLaw(k0={self.k0.tolist()}, beta={self.beta}, T0={self.T0})"


class ArrheniusLaw:
    """``k(T) = k_ref exp(-(E/R) (1/T - 1/T_ref))`` with T in kelvin.

    Args:
        k_ref: Property at ``T_ref`` (scalar or ``d x d``).
        activation_temperature: ``E/R`` in kelvin (activation energy over the gas constant).
        T_ref: Reference temperature in kelvin.
    """

    depends_on_temperature = True

    def __init__(self, k_ref, activation_temperature: float, T_ref: float):
        if T_ref <= 0:
            raise ValueError(f"T_ref must be a positive absolute temperature, got {T_ref}")
        self.k_ref = np.asarray(k_ref, dtype=np.float64)
        self.activation_temperature = float(activation_temperature)
        self.T_ref = float(T_ref)

    def value(self, T) -> np.ndarray:
        """The property at absolute temperatures ``T``."""
        T = np.asarray(T, dtype=np.float64)
        factor = np.exp(-self.activation_temperature * (1.0 / T - 1.0 / self.T_ref))
        return np.multiply.outer(factor, self.k_ref)

    def derivative(self, T) -> np.ndarray:
        """``k(T) E / (R T^2)``."""
        T = np.asarray(T, dtype=np.float64)
        factor = np.exp(-self.activation_temperature * (1.0 / T - 1.0 / self.T_ref))
        return np.multiply.outer(factor * self.activation_temperature / T**2, self.k_ref)

    def __repr__(self):
        return (
            f"ArrheniusLaw(k_ref={self.k_ref.tolist()}, E/R={self.activation_temperature}, "
            f"T_ref={self.T_ref})"
        )


def as_law(value):
    """A law object from a law, or a constant from a number/array."""
    if hasattr(value, "value") and hasattr(value, "derivative"):
        return value
    return ConstantLaw(value)
