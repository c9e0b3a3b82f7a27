"""siri-rl: SIRI (Scaling Iterative Reinforcement learning with Interleaved compression, Wen et al. 2025) on TRL
and veRL. The engine-free core: :mod:`siri_rl.schedule`, :mod:`siri_rl.reward`, :mod:`siri_rl.data`,
:mod:`siri_rl.metrics`, :mod:`siri_rl.plots`, :mod:`siri_rl.config`."""

__version__ = "0.1.0"
