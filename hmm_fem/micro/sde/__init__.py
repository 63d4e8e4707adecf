"""Fast–slow stochastic systems: HMM estimators of the slow drift and diffusion."""
