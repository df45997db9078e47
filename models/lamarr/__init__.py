"""Lamarr: an LHCb-like detailed detector simulation (``generator``, ``detector``) and the ML fast
simulation trained on it (``nets``, ``train``, ``fastsim``).  Import the submodules you need."""
