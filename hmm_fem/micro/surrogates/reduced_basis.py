"""A linear cell micro model answered by a certified reduced basis, falling back to the cell.

:class:`ReducedBasisSurrogate` wraps

* a :class:`~hmm_fem.micro.ConductivityModel` with one cell geometry and isotropic (scalar)
  phase laws: at every state (the temperature) the phase values come from the model's
  laws; the reduced basis gives ``K*`` and its rigorous relative bound. ``dK*/dT`` is the
  central difference of the reduced tensors at ``T +- h`` (three online evaluations,
  ``h = eps^(1/3) max(abs(T), 1)``);
* an :class:`~hmm_fem.micro.ElasticityModel` with one cell geometry and isotropic
  ``(E, nu)`` phases: ``C*`` and its certified bound. Its phases are constants, so the
  model has one state per run: the surrogate saves that one cell solve where the basis
  (trained, or loaded from an earlier run) certifies the answer.

Where the bound is at most ``tolerance`` (and the phase values lie in the basis's
training box) the reduced tensor is the answer; elsewhere the wrapped model solves the
full cell.

**Learning from fallbacks** (``learn=True``, the default): a fallback also takes the
full cell's correctors at the state's phase values
(:meth:`~hmm_fem.cells.ReducedBasis.truth_correctors`) as a snapshot. In :meth:`respond`,
which the dispatcher calls once per evaluation on every rank (so it is collective over
``comm``), the snapshots of all ranks are gathered, sorted by state, and added to the
basis (:meth:`~hmm_fem.cells.ReducedBasis.enrich`: orthonormalised, with the Gram matrices
of the residual extended, so the bound stays rigorous); the training box widens to
contain them. Later states near a fallback are then answered by the basis. A fallback
costs the model's solve and one more factorisation and ``d`` solves for the snapshot.

**Ranks.** A dispatcher call decides with the basis as it was at the start of the call;
every rank adds the same snapshots in the same order, so answers, fallbacks and the basis
are the same on any number of ranks.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..protocol import HISTORY_KEY, MicroModel, MicroResponse, SolveContext
from .gaussian_process import ANSWERED_KEY, INDICATOR_KEY, SurrogateStatistics, flagged_response

__all__ = ["ReducedBasisSurrogate"]

_EPS = float(np.finfo(np.float64).eps)


def _finite(value: float) -> np.ndarray:
    # The dispatcher refuses non-finite solve results: "no bound" is the largest float.
    return np.array(min(float(value), float(np.finfo(np.float64).max)))


class ReducedBasisSurrogate(MicroModel):
    """A conductivity or elasticity cell model answered by its reduced basis where certified.

    Example:
        >>> model = ConductivityModel(cells.square(0.4), {"matrix": 1.0, "inclusion": law})
        >>> problem = model.cell_problem(T=300.0)
        >>> rb = ReducedBasis.train(problem, {"matrix": 1.0, "inclusion": (1.0, 1000.0)})
        >>> surrogate = ReducedBasisSurrogate(model, rb, tolerance=1e-6)

    Args:
        model: A :class:`~hmm_fem.micro.ConductivityModel` with scalar phase laws, or an
            :class:`~hmm_fem.micro.ElasticityModel` with ``(E, nu)`` phases, both with one
            cell (not a cell function).
        basis: A :class:`~hmm_fem.cells.ReducedBasis` of that model's cell. With
            ``learn=True`` the surrogate grows it (share it between surrogates only if
            that is meant).
        tolerance: The largest certified relative error of the tensor answered by the basis.
        learn: Add the correctors of every fallback state to the basis (see the module).
        comm: The communicator of the dispatcher (``respond`` is collective over it).

    Attributes:
        statistics: :class:`~hmm_fem.micro.surrogates.SurrogateStatistics` of this rank
            (``training_size`` is the basis size).
        fallback_states: The states solved by the full cell, in solve order (this rank).
        remedies: The wrapped model's remedies (a failure policy's retries reach it).

    Raises:
        TypeError: If ``model`` is neither a ConductivityModel nor an ElasticityModel.
        ValueError: For a cell function, anisotropic phases, a basis of another kind or
            other phases, a tolerance that is not positive, or ``learn`` with a basis
            that kept no basis vectors.
    """

    def __init__(
        self,
        model: MicroModel,
        basis,
        tolerance: float,
        *,
        learn: bool = True,
        comm: MPI.Comm = MPI.COMM_WORLD,
    ):
        from .. import ConductivityModel, ElasticityModel

        if isinstance(model, ConductivityModel):
            kind = "conductivity"
        elif isinstance(model, ElasticityModel):
            kind = "elasticity"
        else:
            raise TypeError(
                "ReducedBasisSurrogate wraps a ConductivityModel or an ElasticityModel, got "
                f"{type(model).__name__}"
            )
        if model.parameters:
            raise ValueError(
                f"ReducedBasisSurrogate needs a {type(model).__name__} with one cell; this one "
                f"takes the parameters {model.parameters} (a cell function): one basis per cell"
            )
        if basis.kind != kind:
            raise ValueError(f"the reduced basis is of kind '{basis.kind}', not '{kind}'")
        if not (np.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        if learn and not basis.can_enrich:
            raise ValueError(
                "learn=True needs a reduced basis that kept its basis vectors (trained here, "
                "or saved with basis=True); pass learn=False to use this one as it is"
            )
        self.kind = kind
        self.model = model
        self.basis = basis
        self.tolerance = float(tolerance)
        self.learn = bool(learn)
        self.comm = comm
        self.inputs = dict(model.inputs)
        self.output_shape = tuple(model.output_shape)
        self.parameters = ()
        self.state_names = tuple(model.state_names)
        self.remedies = tuple(getattr(model, "remedies", ()) or ())
        self.statistics = SurrogateStatistics(training_size=int(basis.size))
        self.fallback_states: list[np.ndarray] = []
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._temperature = kind == "conductivity" and model.temperature_dependent
        if kind == "conductivity":
            self._laws, self._order = self._conductivity_laws(model, basis)
        else:
            self._fixed = self._elasticity_phases(model, basis)
        self._checked = False
        self.last_answered = np.zeros(0, dtype=bool)
        self.last_indicators = np.zeros(0)

    @staticmethod
    def _conductivity_laws(model, basis):
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
        names = list(basis.phases)
        order = [names.index(tag_to_name.get(key, key)) for key in model.laws]
        return list(model.laws.values()), order

    @staticmethod
    def _elasticity_phases(model, basis) -> np.ndarray:
        tag_to_name = {tag: name for name, tag in basis.phases.items()}
        given = {tag_to_name.get(k, k): v for k, v in model.phases.items()}
        if set(given) != set(basis.phases):
            raise ValueError(
                f"the model's phases are {list(model.phases)}, the reduced basis has "
                f"{basis.phases}; train the basis on model.cell_problem()"
            )
        # (1, P, 2) in the basis's phase order; parameters() refuses anisotropic phases.
        return basis.parameters(given)[None]

    def _problem(self, state: np.ndarray):
        if self.kind == "conductivity":
            T = float(state[0]) if self._temperature else None
            return self.model.cell_problem(T=T)
        return self.model.cell_problem()

    def _check_cell(self, state: np.ndarray) -> None:
        """Check that the basis belongs to the model's cell (kind, dofs, phases, mesh).

        Done at the first solve: a conductivity cell is built at a state's temperature (a
        law may be undefined at an arbitrary one).
        """
        problem = self._problem(state)
        try:
            self.basis.check_cell(problem)
        except ValueError as exc:
            raise ValueError(
                f"the reduced basis was trained on a cell with {self.basis.fingerprint['dofs']} "
                f"dofs and phases {self.basis.phases}; the model's cell has "
                f"{int(problem.system.load.getSize())} dofs and phases "
                f"{dict(problem.cell.phases)}: train it on the model's cell ({exc})"
            ) from None
        self._checked = True

    def _params(self, state: np.ndarray) -> tuple[np.ndarray, float]:
        """``(S, P, n)`` phase values of the evaluations at ``state``, and the step ``h``.

        Conductivity with temperature laws: ``T, T - h, T + h``; otherwise one row.
        """
        if self.kind == "elasticity":
            return self._fixed, 0.0
        T = float(state[0]) if self._temperature else 0.0
        h = _EPS ** (1.0 / 3.0) * max(abs(T), 1.0)
        temperatures = np.array([T, T - h, T + h]) if self._temperature else np.array([T])
        params = np.empty((len(temperatures), len(self._laws), 1))
        for law, p in zip(self._laws, self._order):
            params[:, p, 0] = np.asarray(law.value(temperatures), dtype=np.float64)
        return params, h

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The wrapped model's state (``T`` if a law depends on it; none for elasticity)."""
        return self.model.micro_state(inputs, parameters)

    def solve(self, state: np.ndarray, context: SolveContext | None = None) -> dict:
        """The tensor (and ``dK*/dT``) from the reduced basis where certified, else the cell."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if not self._checked:
            self._check_cell(state)
        params, h = self._params(state)
        inside = bool(np.all(self.basis.inside(params)))
        out = self.basis.evaluate_many(params) if inside else None
        bound = float(out["relative_error_bound"][0]) if out is not None else np.inf
        if inside and bound <= self.tolerance:
            self.statistics.surrogate_answers += 1
            self.statistics.largest_accepted = max(self.statistics.largest_accepted, bound)
            answer = {ANSWERED_KEY: np.array(1.0), INDICATOR_KEY: np.array(bound)}
            if self.kind == "elasticity":
                return {"C": out["tensor"][0], **answer}
            K = out["tensor"][0]
            dK_dT = np.zeros_like(K)
            if self._temperature:
                dK_dT = (out["tensor"][2] - out["tensor"][1]) / (2.0 * h)
            return {"K": K, "dK_dT": dK_dT, **answer}
        result = dict(self.model.solve(state, context))
        result.pop(HISTORY_KEY, None)
        self.statistics.fallbacks += 1
        self.fallback_states.append(state.copy())
        if self.learn:
            if not self.basis.attached:
                self.basis.attach(self._problem(state))
            X, _ = self.basis.truth_correctors(params[0])
            self._pending.append((state.copy(), params, X))
        return {**result, ANSWERED_KEY: np.array(0.0), INDICATOR_KEY: _finite(bound)}

    def synchronise(self) -> int:
        """Add the fallback snapshots of all ranks to the basis (collective over ``comm``).

        Returns:
            The number of basis functions added (the same on every rank).
        """
        if not self.learn:
            return 0
        pending, self._pending = self._pending, []
        parts = self.comm.allgather(pending) if self.comm.size > 1 else [pending]
        items = [item for part in parts for item in part]
        if not items:
            return 0
        states = np.array([s for s, _, _ in items]).reshape(len(items), -1)
        order = np.lexsort(states.T[::-1]) if states.shape[1] else np.arange(len(items))
        keep = [int(order[0])]
        for i, j in zip(order[:-1], order[1:]):
            if np.any(states[j] != states[i]):
                keep.append(int(j))
        if not self.basis.attached:
            self.basis.attach(self._problem(items[keep[0]][0]))
        added = self.basis.enrich(
            [items[i][2] for i in keep], np.concatenate([items[i][1] for i in keep])
        )
        self.statistics.training_size = int(self.basis.size)
        return added

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """The wrapped model's response, with the per-point flags and bounds for output.

        First adds every rank's fallback snapshots to the basis (collective over ``comm``).
        ``solutions`` of the response carry :data:`~.ANSWERED_KEY` (1: reduced basis, 0: full
        cell) and :data:`~.INDICATOR_KEY` (the certified relative bound, the largest
        float outside the training range).
        """
        self.synchronise()
        return flagged_response(self, solutions, inputs, parameters)

    # -- the training, for checkpoints ---------------------------------------------------------
    def training_arrays(self) -> dict[str, np.ndarray]:
        """The basis as named arrays (the same on every rank), for a checkpoint.

        Raises:
            RuntimeError: if fallback snapshots are not yet added (call between evaluations).
        """
        if self._pending:
            raise RuntimeError(
                "ReducedBasisSurrogate: fallback snapshots not yet added to the basis; save "
                "between evaluations (after respond)"
            )
        return self.basis.to_arrays(basis=self.learn)

    def restore_training(self, arrays) -> None:
        """Replace the basis by one from :meth:`training_arrays` (checked at the next solve)."""
        from ...cells.reduced_basis import ReducedBasis

        basis = ReducedBasis.from_arrays(arrays, what="the checkpointed reduced basis")
        if basis.kind != self.kind:
            raise ValueError(f"the checkpointed reduced basis is of kind '{basis.kind}'")
        self.basis = basis
        self._pending = []
        self._checked = False
        self.statistics.training_size = int(basis.size)
