"""A micro model seen under other inputs: the base of thin renaming or reshaping wrappers."""

from __future__ import annotations

from .protocol import MicroModel

__all__ = ["InputAdapter"]


class InputAdapter(MicroModel):
    """Shows ``model`` with other inputs; the solve, the state and the history are its own.

    A subclass maps its inputs to the wrapped model's in :meth:`adapt` and maps the wrapped
    response back in ``respond``. Everything else (parameters, state names, history, time
    dependence, noise, seed) is the wrapped model's, so the dispatcher keys, caches and
    commits exactly as it would for the wrapped model. The wrapped model's
    :attr:`~hmm_fem.micro.MicroModel.remedies` are the wrapper's, and the solve context
    (with the remedy a retry asks for) reaches the wrapped solve unchanged.

    Args:
        model: The wrapped micro model.
        inputs: The inputs the wrapper takes (name to shape).
        output_shape: The shape of the wrapper's response at one point.
    """

    def __init__(self, model: MicroModel, inputs: dict, output_shape: tuple):
        self.model = model
        self.inputs = dict(inputs)
        self.output_shape = tuple(output_shape)
        self.parameters = model.parameters
        self.state_names = model.state_names
        self.history = model.history
        self.time_dependent = model.time_dependent
        self.stochastic = model.stochastic
        self.seed = model.seed
        self.remedies = tuple(model.remedies)

    def adapt(self, inputs):
        """The wrapped model's inputs from the wrapper's (a subclass defines it)."""
        raise NotImplementedError

    def initial_history(self):
        """The wrapped model's initial history."""
        return self.model.initial_history()

    def micro_state(self, inputs, parameters):
        """The wrapped model's state at the adapted inputs."""
        return self.model.micro_state(self.adapt(inputs), parameters)

    def solve(self, state, context):
        """The wrapped model's solve."""
        return self.model.solve(state, context)
