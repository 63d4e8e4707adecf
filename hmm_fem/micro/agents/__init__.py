"""Agent-based micro models (vectorised walkers; an adapter for Mesa models).

:class:`LatticeWalkers` (random walkers that proliferate with a crowding limit, as counts
on a lattice; the mean-field limit is the Fisher–KPP equation) runs patches and the full
simulation of a box (:class:`LatticeDNS`); :class:`AgentPatchModel` puts it, or a Mesa
model through :class:`MesaPatches`, behind the micro seam as a stochastic model of the
growth rate and flux; :class:`hmm_fem.macro.PatchReactionDiffusion` couples it to a
DOLFINx macro mesh.
"""

from .lattice import LatticeDNS, LatticeWalkers, PatchEstimate
from .model import AgentPatchModel

__all__ = [
    "LatticeWalkers",
    "LatticeDNS",
    "PatchEstimate",
    "AgentPatchModel",
    "MesaPatches",
    "MesaWalkers",
]


def __getattr__(name):
    # Mesa (and pandas) load only when a Mesa adapter is asked for.
    if name in ("MesaPatches", "MesaWalkers"):
        from . import mesa_adapter

        return getattr(mesa_adapter, name)
    raise AttributeError(f"module 'hmm_fem.micro.agents' has no attribute {name!r}")
