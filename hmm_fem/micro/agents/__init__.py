"""Agent-based micro models (vectorised walkers; an adapter for Mesa models)."""
