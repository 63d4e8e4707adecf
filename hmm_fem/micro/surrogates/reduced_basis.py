"""A conductivity micro model answered by a certified reduced basis, falling back to the cell.

:class:`ReducedBasisSurrogate` wraps a :class:`~hmm_fem.micro.ConductivityModel` with one
cell geometry and isotropic (scalar) phase laws, and a
:class:`~hmm_fem.cells.ReducedBasis` trained on that cell. At every state (the
temperature) the phase values come from the model's laws; the reduced basis gives ``K*``
and its rigorous relative bound. Where the bound is at most ``tolerance`` the reduced
tensor is the answer; elsewhere (outside the training range, or a basis too small there)
the full cell is solved. ``dK*/dT`` is the central difference of the reduced tensors at
``T +- h`` (three online evaluations, ``h = eps^(1/3) max(|T|, 1)``).

The fallback solve does **not** enlarge the basis: :class:`~hmm_fem.cells.ReducedBasis`
keeps only its online data (the truth-space matrices and the basis vectors are released
after training), so a snapshot cannot be added afterwards. The fallback states are kept
(:attr:`ReducedBasisSurrogate.fallback_states`) to retrain on a wider range.

The decision depends on the state only, so answers and fallbacks are the same on any
number of ranks.
"""

from __future__ import annotations

import numpy as np

from ..protocol import MicroModel, MicroResponse, SolveContext
from .gaussian_process import ANSWERED_KEY, INDICATOR_KEY, SurrogateStatistics, flagged_response

__all__ = ["ReducedBasisSurrogate"]

_EPS = float(np.finfo(np.float64).eps)


def _finite(value: float) -> np.ndarray:
    # The dispatcher refuses non-finite solve results: "no bound" is the largest float.
    return np.array(min(float(value), float(np.finfo(np.float64).max)))


class ReducedBasisSurrogate(MicroModel):
    """A :class:`~hmm_fem.micro.ConductivityModel` answered by its reduced basis where certified.

    Example:
        >>> model = ConductivityModel(cells.square(0.4), {"matrix": 1.0, "inclusion": law})
        >>> problem = model.cell_problem(T=300.0)
        >>> rb = ReducedBasis.train(problem, {"matrix": 1.0, "inclusion": (1.0, 1000.0)})
        >>> surrogate = ReducedBasisSurrogate(model, rb, tolerance=1e-6)

    Args:
        model: A :class:`~hmm_fem.micro.ConductivityModel` with one cell (not a cell
            function) and scalar phase laws.
        basis: A :class:`~hmm_fem.cells.ReducedBasis` of that model's cell.
        tolerance: The largest certified relative error of ``K*`` answered by the basis.

    Attributes:
        statistics: :class:`~hmm_fem.micro.surrogates.SurrogateStatistics` of this rank
            (``training_size`` is the basis size).
        fallback_states: The states solved by the full cell, in solve order (this rank).

    Raises:
        TypeError: If ``model`` is not a ConductivityModel.
        ValueError: For a cell function, anisotropic laws, a basis of another kind or
            other phases, or a tolerance that is not positive.
    """

    def __init__(self, model: MicroModel, basis, tolerance: float):
        from .. import ConductivityModel

        if not isinstance(model, ConductivityModel):
            raise TypeError(
                f"ReducedBasisSurrogate wraps a ConductivityModel, got {type(model).__name__}"
            )
        if model.parameters:
            raise ValueError(
                "ReducedBasisSurrogate needs a ConductivityModel with one cell; this one takes "
                f"the parameters {model.parameters} (a cell function): one basis per cell"
            )
        if basis.kind != "conductivity":
            raise ValueError(f"the reduced basis is of kind '{basis.kind}', not 'conductivity'")
        if not (np.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        for key, law in model.laws.items():
            # A law's value at no temperature has the shape (0, *property shape).
            if np.asarray(law.value(np.zeros(0))).ndim > 1:
                raise ValueError(
                    f"the law of phase {key!r} is anisotropic; the reduced basis covers "
                    "isotropic phases only"
                )
        tag_to_name = {tag: name for name, tag in basis.phases.items()}
        unknown = [k for k in model.laws if tag_to_name.get(k, k) not in basis.phases]
        if unknown or len(model.laws) != len(basis.phases):
            raise ValueError(
                f"the model's laws name the phases {list(model.laws)}, the reduced basis has "
                f"{basis.phases}; train the basis on model.cell_problem(T=...)"
            )
        self.model = model
        self.basis = basis
        self.tolerance = float(tolerance)
        self.inputs = dict(model.inputs)
        self.output_shape = tuple(model.output_shape)
        self.parameters = ()
        self.state_names = tuple(model.state_names)
        self.statistics = SurrogateStatistics(training_size=int(basis.size))
        self.fallback_states: list[np.ndarray] = []
        names = list(basis.phases)
        self._order = [
            names.index(tag_to_name.get(key, key)) for key in model.laws
        ]  # law order -> phase order
        self._laws = list(model.laws.values())
        self._checked = False
        self.last_answered = np.zeros(0, dtype=bool)
        self.last_indicators = np.zeros(0)

    def _check_cell(self, state: np.ndarray) -> None:
        """Check that the basis belongs to the model's cell.

        Done at the first solve: the cell is built at a state's temperature (a law may be
        undefined at an arbitrary one).
        """
        T = float(state[0]) if self.model.temperature_dependent else None
        problem = self.model.cell_problem(T=T)
        dofs = int(problem.system.load.getSize())
        if dofs != self.basis.fingerprint["dofs"] or dict(problem.cell.phases) != dict(
            self.basis.phases
        ):
            raise ValueError(
                f"the reduced basis was trained on a cell with {self.basis.fingerprint['dofs']} "
                f"dofs and phases {self.basis.phases}; the model's cell has {dofs} dofs and "
                f"phases {dict(problem.cell.phases)}: train it on model.cell_problem(T=...)"
            )
        self._checked = True

    def _params(self, T: np.ndarray) -> np.ndarray:
        """``(S, P, 1)`` phase conductivities at temperatures ``T`` (``(S,)``)."""
        params = np.empty((len(T), len(self._laws), 1))
        for law, p in zip(self._laws, self._order):
            params[:, p, 0] = np.asarray(law.value(T), dtype=np.float64)
        return params

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The wrapped model's state (``T`` if a law depends on it, else no column)."""
        return self.model.micro_state(inputs, parameters)

    def solve(self, state: np.ndarray, context: SolveContext | None = None) -> dict:
        """``K*`` and ``dK*/dT`` from the reduced basis where certified, else the full cell."""
        if not self._checked:
            self._check_cell(state)
        T = float(state[0]) if self.model.temperature_dependent else 0.0
        h = _EPS ** (1.0 / 3.0) * max(abs(T), 1.0)
        temperatures = np.array([T, T - h, T + h]) if self.model.temperature_dependent else [T]
        params = self._params(np.asarray(temperatures))
        inside = bool(np.all(self.basis.inside(params)))
        out = None
        if inside:
            out = self.basis.evaluate_many(params)
        bound = float(out["relative_error_bound"][0]) if out is not None else np.inf
        if inside and bound <= self.tolerance:
            self.statistics.surrogate_answers += 1
            self.statistics.largest_accepted = max(self.statistics.largest_accepted, bound)
            K = out["tensor"][0]
            if self.model.temperature_dependent:
                dK_dT = (out["tensor"][2] - out["tensor"][1]) / (2.0 * h)
            else:
                dK_dT = np.zeros_like(K)
            return {
                "K": K,
                "dK_dT": dK_dT,
                ANSWERED_KEY: np.array(1.0),
                INDICATOR_KEY: np.array(bound),
            }
        self.statistics.fallbacks += 1
        self.fallback_states.append(np.array(state, dtype=np.float64))
        result = dict(self.model.solve(state, context))
        return {**result, ANSWERED_KEY: np.array(0.0), INDICATOR_KEY: _finite(bound)}

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """The wrapped model's response, with the per-point flags and bounds for output.

        ``solutions`` of the response carry :data:`~.ANSWERED_KEY` (1: reduced basis, 0: full
        cell) and :data:`~.INDICATOR_KEY` (the certified relative bound, the largest
        float outside the training range).
        """
        return flagged_response(self, solutions, inputs, parameters)
