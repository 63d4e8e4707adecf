"""A constitutive law at the macro quadrature points, as a micro model with history.

:class:`MaterialPointModel` puts a small-strain law with internal variables (such as
:class:`hmm_fem.materials.J2Plasticity`) at every macro point, through the same seam
as the cells: the internal variables are the point's history, committed when the macro
step converges and rolled back when it is cut. It is plain (single-scale) plasticity in
a macro problem, and the reference an FE² run with one-phase cells must reproduce.
"""

from __future__ import annotations

import numpy as np

from .protocol import HISTORY_KEY, MicroModel, MicroResponse, SolveContext

__all__ = ["MaterialPointModel"]


class MaterialPointModel(MicroModel):
    """The stress of a material law with internal variables at every macro point.

    Input: ``strain`` (Voigt, engineering shears, plane strain in 2D: the law's
    ``strain_size`` components). Response: the Voigt stress with the law's algorithmic
    tangent. History: the law's internal variables (``law.STATE_SHAPES``). The micro
    state is the strain; the committed internal variables are part of the dispatcher's
    key, so points share a solve only with equal strain and equal history.

    Args:
        law: An object with ``strain_size``, ``STATE_SHAPES``, ``initial_state(n)`` and
            ``return_mapping(strain, state)`` returning ``stress``, ``tangent`` and
            ``state`` (as :class:`~hmm_fem.materials.J2Plasticity`).
    """

    def __init__(self, law):
        self.law = law
        size = int(law.strain_size)
        self.inputs = {"strain": (size,)}
        self.output_shape = (size,)
        self.history = {name: tuple(shape) for name, shape in law.STATE_SHAPES.items()}
        self.state_names = tuple(f"strain[{k}]" for k in range(size))

    def initial_history(self) -> dict[str, np.ndarray]:
        """The law's virgin state at one point."""
        return {name: value[0] for name, value in self.law.initial_state(1).items()}

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The strain, ``(n, strain_size)``."""
        strain = np.asarray(inputs["strain"], dtype=np.float64)
        return strain.reshape(strain.shape[0], -1)

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """The return mapping from the committed internal variables."""
        committed = {name: np.asarray(v)[None] for name, v in context.history.items()}
        response = self.law.return_mapping(np.asarray(state)[None], committed)
        return {
            "stress": response.stress[0],
            "tangent": response.tangent[0],
            "yielded": np.array(float(response.yielded[0])),
            HISTORY_KEY: {name: value[0] for name, value in response.state.items()},
        }

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """The stress and its algorithmic tangent at every point."""
        return MicroResponse(solutions["stress"], {"strain": solutions["tangent"]}, dict(solutions))
