"""Small-strain J2 (von Mises) elastoplasticity at material points (NumPy, vectorised).

The law of the elastoplastic phase of the FE² plasticity cells, evaluated at ``n``
material points at once (no Python loop over points): radial return for isotropic
linear elasticity, the von Mises yield function, linear isotropic and linear kinematic
(Prager) hardening, and the algorithmic (consistent) tangent. The formulation, the
radial return and its consistent tangent are those of J2 flow theory with combined
isotropic/kinematic hardening in Simo & Hughes, *Computational Inelasticity* (Springer,
1998), chapter 3, specialised to linear hardening (so the return is closed form).

Model (tensors; ``dev`` is the deviator, ``||.||`` the Frobenius norm)::

    sigma = K tr(eps) I + 2 mu dev(eps - eps_p)
    f(sigma, beta, alpha) = ||dev(sigma) - beta|| - sqrt(2/3) (sigma_y + H_iso alpha)
    d eps_p = d gamma n,   n = (dev sigma - beta) / ||dev sigma - beta||
    d beta  = (2/3) H_kin d eps_p                      (linear Prager hardening)
    d alpha = sqrt(2/3) ||d eps_p||                    (equivalent plastic strain)

so that in uniaxial stress the yield stress is ``sigma_y`` and the slope of stress
against plastic strain is ``H_iso + H_kin``. For linear hardening the return mapping is
closed form: with the trial values ``xi = dev(sigma_trial) - beta_n`` and
``f_trial = ||xi|| - sqrt(2/3) (sigma_y + H_iso alpha_n)``, a point yields when
``f_trial > 0`` and then ``d gamma = f_trial / (2 mu + 2/3 (H_iso + H_kin))``. The
algorithmic tangent is

    C_alg = K I (x) I + 2 mu theta I_dev - 2 mu theta_bar n (x) n,
    theta = 1 - 2 mu d gamma / ||xi||,
    theta_bar = 1 / (1 + (H_iso + H_kin) / (3 mu)) - (1 - theta),

and the elastic stiffness where the point does not yield.

Conventions (those of :mod:`hmm_fem.voigt`):

* Strains in Voigt form with engineering shears, stresses without factors, in the order
  ``xx, yy, zz, yz, xz, xy``; a tangent ``C`` maps a Voigt strain increment to the Voigt
  stress increment (its elastic shear diagonal is ``mu``).
* ``dim=3``: strains, stresses ``(n, 6)``, tangents ``(n, 6, 6)``.
* ``dim=2`` is **plane strain**: the strain is the in-plane ``(e_xx, e_yy, 2 e_xy)``
  ``(n, 3)`` with ``e_zz = e_yz = e_xz = 0``; the stress returned is ``(s_xx, s_yy,
  s_xy)`` ``(n, 3)`` and the tangent ``(n, 3, 3)`` (the ``xx, yy, xy`` block of the 3D
  algorithmic tangent, exact because the out-of-plane strains are held at zero). The law
  works on the full 3D state: ``s_zz`` (not zero in plane strain) is in
  :attr:`J2Response.stress_3d`, and the plastic strain ``eps_p_zz`` (not zero either) in the
  internal variables.
* Internal variables are a dict of arrays, the same shapes in 2D and 3D
  (:attr:`J2Plasticity.STATE_SHAPES`): ``"plastic_strain"`` ``(n, 6)`` (Voigt, engineering
  shears, full 3D), ``"back_stress"`` ``(n, 6)`` (Voigt stress, full 3D) and
  ``"equivalent_plastic_strain"`` ``(n,)`` (``alpha`` above, dimensionless).
* Units: ``E``, ``yield_stress`` and the hardening moduli in one stress unit; stresses,
  back stresses and tangents come out in that unit; strains are dimensionless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .validation import require_young_poisson

__all__ = ["J2Plasticity", "J2Response", "StrainPathResult", "integrate_strain_path"]

_SQRT2 = np.sqrt(2.0)
_SQRT_2_3 = np.sqrt(2.0 / 3.0)
#: Mandel weights of the 3D Voigt order: shear components times sqrt(2).
_MANDEL = np.array([1.0, 1.0, 1.0, _SQRT2, _SQRT2, _SQRT2])
#: 3D Voigt components of the in-plane strain/stress of the plane strain mode (xx, yy, xy).
_PLANE = np.array([0, 1, 5])
_IDENTITY = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
#: The deviatoric projector in the orthonormal (Mandel) basis.
_DEVIATOR = np.eye(6) - np.outer(_IDENTITY, _IDENTITY) / 3.0
#: A point yields when ``f_trial > YIELD_TOLERANCE * sqrt(2/3) sigma_y(alpha)``: a point left
#: on the yield surface by the previous return, loaded neutrally, stays elastic instead of
#: flipping between elastic and plastic on the sign of round-off.
YIELD_TOLERANCE = 1e-12


@dataclass(frozen=True)
class J2Response:
    """The answer of :meth:`J2Plasticity.return_mapping` at ``n`` points.

    Attributes:
        stress: Voigt stress ``(n, 6)`` in 3D, in-plane ``(n, 3)`` (``s_xx, s_yy, s_xy``)
            in plane strain.
        tangent: Algorithmic tangent ``d stress / d strain`` ``(n, 6, 6)`` or ``(n, 3, 3)``
            (Voigt: engineering shear strains), or ``None`` if not asked for.
        state: The updated internal variables (new arrays; the committed state passed in
            is untouched). The caller commits them once the load step has converged.
        yielded: ``(n,)`` bool, ``True`` where this increment was plastic.
        stress_3d: The full 3D Voigt stress ``(n, 6)`` (in plane strain, ``stress_3d[:, 2]``
            is ``s_zz``; the shears ``yz``, ``xz`` are zero).
    """

    stress: np.ndarray
    tangent: np.ndarray | None
    state: dict[str, np.ndarray]
    yielded: np.ndarray
    stress_3d: np.ndarray

    @property
    def stress_zz(self) -> np.ndarray:
        """The out-of-plane normal stress ``s_zz``, ``(n,)`` (not zero in plane strain)."""
        return self.stress_3d[:, 2]


class J2Plasticity:
    """Small-strain J2 plasticity with linear isotropic and kinematic hardening.

    See the module docstring for the model, the algorithm and the conventions.

    Args:
        E: Young's modulus (positive).
        nu: Poisson ratio in ``(-1, 1/2)``.
        yield_stress: Initial uniaxial yield stress ``sigma_y`` (positive), in the units of
            ``E``.
        isotropic_hardening: ``H_iso = d sigma_y / d alpha`` (non-negative), in the units of
            ``E``.
        kinematic_hardening: ``H_kin`` of the Prager rule ``d beta = (2/3) H_kin d eps_p``
            (non-negative), in the units of ``E``. With both moduli zero the material is
            perfectly plastic.
        dim: 3, or 2 for plane strain (the package's 2D model).

    Raises:
        ValueError: For non-finite or out-of-range parameters, naming the parameter.

    Example:
        >>> law = J2Plasticity(E=200e3, nu=0.3, yield_stress=250.0, isotropic_hardening=1e3)
        >>> state = law.initial_state(n=4)
        >>> strain = np.full((4, 6), 2e-3)                  # Voigt, engineering shears
        >>> response = law.return_mapping(strain, state)    # at every Newton iterate
        >>> response.stress.shape, response.tangent.shape, response.yielded.shape
        ((4, 6), (4, 6, 6), (4,))
        >>> state = response.state                          # commit after convergence
    """

    #: Shape of every internal variable at one point (the arrays have ``(n,) + shape``).
    STATE_SHAPES: dict[str, tuple[int, ...]] = {
        "plastic_strain": (6,),
        "back_stress": (6,),
        "equivalent_plastic_strain": (),
    }

    def __init__(
        self,
        E: float,
        nu: float,
        yield_stress: float,
        isotropic_hardening: float = 0.0,
        kinematic_hardening: float = 0.0,
        dim: int = 3,
    ):
        given = dict(
            E=E,
            nu=nu,
            yield_stress=yield_stress,
            isotropic_hardening=isotropic_hardening,
            kinematic_hardening=kinematic_hardening,
        )
        what = "J2Plasticity"
        self.E, self.nu = require_young_poisson(
            _require_real(E, "E", what, given), _require_real(nu, "nu", what, given), what, (E, nu)
        )
        self.yield_stress = _require_real(yield_stress, "yield_stress", what, given)
        if not self.yield_stress > 0.0:
            raise ValueError(
                f"{what}: yield_stress must be positive, got {yield_stress!r} (in the units "
                "of E; a material with no elastic range is not a J2 material)."
            )
        self.isotropic_hardening = _require_real(
            isotropic_hardening, "isotropic_hardening", what, given
        )
        self.kinematic_hardening = _require_real(
            kinematic_hardening, "kinematic_hardening", what, given
        )
        for name in ("isotropic_hardening", "kinematic_hardening"):
            if getattr(self, name) < 0.0:
                raise ValueError(
                    f"{what}: {name} must be >= 0, got {given[name]!r}. Softening is not "
                    "supported (it makes the cell problem ill-posed); 0 is perfect plasticity."
                )
        if dim not in (2, 3):
            raise ValueError(f"{what}: dim={dim!r} must be 3 or 2 (plane strain)")
        self.dim = dim
        self.shear_modulus = self.E / (2.0 * (1.0 + self.nu))
        self.bulk_modulus = self.E / (3.0 * (1.0 - 2.0 * self.nu))

    def __repr__(self) -> str:
        return (
            f"J2Plasticity(E={self.E!r}, nu={self.nu!r}, yield_stress={self.yield_stress!r}, "
            f"isotropic_hardening={self.isotropic_hardening!r}, "
            f"kinematic_hardening={self.kinematic_hardening!r}, dim={self.dim!r})"
        )

    @property
    def plane_strain(self) -> bool:
        """``True`` for the 2D (plane strain) mode."""
        return self.dim == 2

    @property
    def strain_size(self) -> int:
        """Number of Voigt strain/stress components in and out: 6 in 3D, 3 in plane strain."""
        return 6 if self.dim == 3 else 3

    def elastic_stiffness(self) -> np.ndarray:
        """The elastic Voigt stiffness, ``(6, 6)`` or ``(3, 3)`` (plane strain)."""
        mu, kappa = self.shear_modulus, self.bulk_modulus
        C = kappa * np.outer(_IDENTITY, _IDENTITY) + 2.0 * mu * _DEVIATOR
        C = C / np.outer(_MANDEL, _MANDEL)
        return C[np.ix_(_PLANE, _PLANE)] if self.plane_strain else C

    def initial_state(self, n: int) -> dict[str, np.ndarray]:
        """The virgin state of ``n`` points: all internal variables zero.

        Returns:
            A dict of float64 zeros: ``plastic_strain`` (n, 6), ``back_stress`` (n, 6)
            and ``equivalent_plastic_strain`` (n,).
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n={n!r} must be a non-negative integer number of points")
        return {key: np.zeros((int(n),) + shape) for key, shape in self.STATE_SHAPES.items()}

    def yield_function(
        self, stress_3d: np.ndarray, back_stress: np.ndarray, equivalent_plastic_strain
    ) -> np.ndarray:
        """``f = ||dev(sigma) - beta|| - sqrt(2/3) (sigma_y + H_iso alpha)``, shape ``(n,)``.

        Negative inside the elastic domain, zero on the yield surface; in the units of ``E``
        (``sqrt(3/2) f`` is the excess of the von Mises stress of ``sigma - beta`` over the
        current yield stress). After :meth:`return_mapping`, ``f = 0`` to round-off at the
        points that yielded and ``f < 0`` at the others.

        Args:
            stress_3d: Full 3D Voigt stresses ``(n, 6)`` (:attr:`J2Response.stress_3d`).
            back_stress: Voigt back stresses ``(n, 6)``.
            equivalent_plastic_strain: ``alpha``, ``(n,)``.
        """
        xi = _DEVIATOR @ (np.asarray(stress_3d) - np.asarray(back_stress)).T
        xi = xi.T * _MANDEL
        norm = np.sqrt(np.einsum("ij,ij->i", xi, xi))
        return norm - _SQRT_2_3 * self._yield_radius(np.asarray(equivalent_plastic_strain))

    def _yield_radius(self, alpha: np.ndarray) -> np.ndarray:
        return self.yield_stress + self.isotropic_hardening * alpha

    def return_mapping(
        self, strain: np.ndarray, state: Mapping[str, np.ndarray], tangent: bool = True
    ) -> J2Response:
        """Stress, algorithmic tangent and updated internal variables at ``n`` points.

        One backward-Euler step from the committed ``state`` to the total ``strain``
        (radial return). The committed state is not modified: the caller may call this at
        every Newton iterate of a load step and commit :attr:`J2Response.state` once the
        step has converged.

        Args:
            strain: Total Voigt strains (engineering shears), ``(n, 6)`` in 3D or the
                in-plane ``(n, 3)`` ``(e_xx, e_yy, 2 e_xy)`` in plane strain.
            state: Committed internal variables (:attr:`STATE_SHAPES`, e.g. from
                :meth:`initial_state` or a previous :attr:`J2Response.state`).
            tangent: Whether to form the tangent (``False`` saves its ``(n, 6, 6)`` work,
                e.g. in a line search).

        Returns:
            A :class:`J2Response`.

        Raises:
            ValueError: If ``strain`` has the wrong shape or is not finite, or ``state``
                misses a variable, has the wrong shapes or is not finite.
        """
        strain = self._check_strain(strain)
        n = strain.shape[0]
        eps_p, beta, alpha = self._check_state(state, n)
        mu, kappa = self.shear_modulus, self.bulk_modulus
        hardening = self.isotropic_hardening + self.kinematic_hardening

        # Everything in the orthonormal (Mandel) basis, where norms and projectors are plain,
        # and component-major: NumPy is several times slower on (n, 6) arrays broadcast
        # against a length-6 row than on (6, n) rows, and slower still when one operation
        # mixes the two layouts, so the inputs are transposed once into contiguous copies.
        weights = _MANDEL[:, None]
        eps_p = np.ascontiguousarray(eps_p.T)
        beta = np.ascontiguousarray(beta.T)
        if self.plane_strain:
            eps = np.zeros((6, n))
            eps[_PLANE] = strain.T
        else:
            # A copy always: for one point strain.T is already contiguous, and the in-place
            # updates below would overwrite the caller's strain.
            eps = np.array(strain.T, order="C")
        eps -= eps_p
        eps /= weights
        volumetric = eps[0] + eps[1] + eps[2]
        s_trial = eps
        s_trial *= 2.0 * mu
        s_trial[:3] -= (2.0 * mu / 3.0) * volumetric
        xi = beta * weights
        np.subtract(s_trial, xi, out=xi)
        norm = np.sqrt(np.einsum("kp,kp->p", xi, xi))
        radius = _SQRT_2_3 * self._yield_radius(alpha)
        f_trial = norm - radius
        yielded = f_trial > YIELD_TOLERANCE * radius

        dgamma = np.where(yielded, f_trial, 0.0) / (2.0 * mu + (2.0 / 3.0) * hardening)
        # The direction only matters where the point yields, where ||xi|| > radius > 0.
        normal = xi / np.where(yielded, norm, 1.0)
        step = dgamma * normal
        stress = s_trial - (2.0 * mu) * step
        stress[:3] += kappa * volumetric
        stress /= weights
        step *= weights  # now the Voigt plastic strain increment (engineering shears)
        back_stress = step * ((2.0 / 3.0) * self.kinematic_hardening)
        back_stress[3:] *= 0.5  # Voigt stress from Voigt strain: shears halved
        back_stress += beta
        step += eps_p
        stress_3d = np.ascontiguousarray(stress.T)
        new_state = {
            "plastic_strain": np.ascontiguousarray(step.T),
            "back_stress": np.ascontiguousarray(back_stress.T),
            "equivalent_plastic_strain": alpha + _SQRT_2_3 * dgamma,
        }

        C = None
        if tangent:
            theta = 1.0 - 2.0 * mu * dgamma / np.where(yielded, norm, 1.0)
            theta_bar = np.where(yielded, 1.0 / (1.0 + hardening / (3.0 * mu)) - (1.0 - theta), 0.0)
            C = self._tangent((2.0 * mu) * theta, (2.0 * mu) * theta_bar, normal)

        out = stress_3d[:, _PLANE] if self.plane_strain else stress_3d
        return J2Response(
            stress=np.ascontiguousarray(out),
            tangent=C,
            state=new_state,
            yielded=yielded,
            stress_3d=stress_3d,
        )

    def _tangent(self, deviatoric: np.ndarray, normal_part: np.ndarray, normal: np.ndarray):
        """``K I(x)I + deviatoric I_dev - normal_part n(x)n`` in Voigt form, ``(n, k, k)``.

        Built directly as ``C_voigt = W^-1 C_mandel W^-1`` and only for the components
        returned (the 3x3 in-plane block in plane strain), one symmetric pair of components
        at a time over all points.
        """
        keep = _PLANE if self.plane_strain else np.arange(6)
        scale = np.outer(_MANDEL, _MANDEL)[np.ix_(keep, keep)]
        deviator = _DEVIATOR[np.ix_(keep, keep)] / scale
        volumetric = self.bulk_modulus * np.outer(_IDENTITY, _IDENTITY)[np.ix_(keep, keep)]
        direction = normal[keep] / _MANDEL[keep, None]
        weighted = normal_part * direction
        size = keep.size
        C = np.empty((size, size, normal.shape[1]))
        for i in range(size):
            for j in range(i, size):
                C[i, j] = deviatoric * deviator[i, j]
                C[i, j] += volumetric[i, j]
                C[i, j] -= weighted[i] * direction[j]
                if j > i:
                    C[j, i] = C[i, j]
        return np.ascontiguousarray(C.transpose(2, 0, 1))

    def _check_strain(self, strain) -> np.ndarray:
        strain = np.asarray(strain, dtype=np.float64)
        size = self.strain_size
        if strain.ndim != 2 or strain.shape[1] != size:
            mode = (
                "3D: (e_xx, e_yy, e_zz, 2e_yz, 2e_xz, 2e_xy)"
                if size == 6
                else ("plane strain: (e_xx, e_yy, 2e_xy)")
            )
            raise ValueError(
                f"J2Plasticity(dim={self.dim}): strain must have shape (n, {size}) ({mode}), "
                f"got {strain.shape}; pass one point as strain[None, :]."
            )
        if not np.all(np.isfinite(strain)):
            bad = np.flatnonzero(~np.all(np.isfinite(strain), axis=1))
            raise ValueError(
                f"J2Plasticity: strain is not finite at {bad.size} of {strain.shape[0]} points "
                f"(first: point {bad[0]}, strain {strain[bad[0]].tolist()})"
            )
        return strain

    def _check_state(self, state, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(state, Mapping):
            raise ValueError(
                f"J2Plasticity: state must be a dict of arrays {list(self.STATE_SHAPES)}, got "
                f"{type(state).__name__}; start from initial_state(n)."
            )
        missing = [key for key in self.STATE_SHAPES if key not in state]
        if missing:
            raise ValueError(
                f"J2Plasticity: state misses {missing} (it has {sorted(state)}); start from "
                "initial_state(n)."
            )
        arrays = []
        for key, shape in self.STATE_SHAPES.items():
            value = np.asarray(state[key], dtype=np.float64)
            if value.shape != (n,) + shape:
                raise ValueError(
                    f"J2Plasticity: state[{key!r}] has shape {value.shape}, expected "
                    f"{(n,) + shape} for {n} strain points."
                )
            if not np.all(np.isfinite(value)):
                raise ValueError(f"J2Plasticity: state[{key!r}] is not finite")
            arrays.append(value)
        return tuple(arrays)


def _require_real(value, name: str, what: str, given) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {name} must be a real number, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{what}: {name} is not finite: {given!r}")
    return number


@dataclass(frozen=True)
class StrainPathResult:
    """A strain path integrated by :func:`integrate_strain_path` (``m`` steps).

    Attributes:
        stress: ``(m, [n,] k)`` stresses after every step (``k`` = 6, or 3 in plane strain).
        stress_3d: ``(m, [n,] 6)`` full 3D stresses.
        plastic_strain: ``(m, [n,] 6)``.
        back_stress: ``(m, [n,] 6)``.
        equivalent_plastic_strain: ``(m, [n])``.
        yielded: ``(m, [n])`` bool: step ``i`` was plastic.
        tangent: ``(m, [n,] k, k)`` algorithmic tangents, or ``None``.
        state: The internal variables after the last step (``(n, ...)`` arrays).
    """

    stress: np.ndarray
    stress_3d: np.ndarray
    plastic_strain: np.ndarray
    back_stress: np.ndarray
    equivalent_plastic_strain: np.ndarray
    yielded: np.ndarray
    tangent: np.ndarray | None
    state: dict[str, np.ndarray]


def integrate_strain_path(
    law: J2Plasticity,
    strains,
    state: Mapping[str, np.ndarray] | None = None,
    tangent: bool = False,
) -> StrainPathResult:
    """Follow a prescribed total-strain path, committing the state after every step.

    The material-point reference of the plasticity cells: each row of ``strains`` is one
    increment's end value (one radial return each, vectorised over the points).

    Args:
        law: The material.
        strains: ``(m, k)`` for one point or ``(m, n, k)`` for ``n`` points, ``k`` =
            :attr:`J2Plasticity.strain_size`.
        state: Committed state to start from, arrays ``(n, ...)`` (``n = 1`` when
            ``strains`` is ``(m, k)``); the virgin state by default.
        tangent: Whether to record the tangents.

    Returns:
        A :class:`StrainPathResult`; with ``(m, k)`` strains the point axis is dropped.
    """
    strains = np.asarray(strains, dtype=np.float64)
    single = strains.ndim == 2
    if single:
        strains = strains[:, None, :]
    if strains.ndim != 3 or strains.shape[0] == 0:
        raise ValueError(
            f"strains must have shape (m, {law.strain_size}) or (m, n, {law.strain_size}) "
            f"with m >= 1 steps, got {strains.shape}"
        )
    current = law.initial_state(strains.shape[1]) if state is None else dict(state)
    records: dict[str, list] = {
        key: [] for key in ("stress", "stress_3d", "yielded", "tangent", *J2Plasticity.STATE_SHAPES)
    }
    for strain in strains:
        response = law.return_mapping(strain, current, tangent=tangent)
        current = response.state
        records["stress"].append(response.stress)
        records["stress_3d"].append(response.stress_3d)
        records["yielded"].append(response.yielded)
        records["tangent"].append(response.tangent)
        for key in J2Plasticity.STATE_SHAPES:
            records[key].append(current[key])

    def stacked(key):
        array = np.stack(records[key])
        return array[:, 0] if single else array

    return StrainPathResult(
        stress=stacked("stress"),
        stress_3d=stacked("stress_3d"),
        plastic_strain=stacked("plastic_strain"),
        back_stress=stacked("back_stress"),
        equivalent_plastic_strain=stacked("equivalent_plastic_strain"),
        yielded=stacked("yielded"),
        tangent=stacked("tangent") if tangent else None,
        state=current,
    )
