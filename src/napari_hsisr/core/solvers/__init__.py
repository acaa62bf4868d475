"""Numerical building blocks shared by the fusion methods (no method registry here).

* :mod:`.subspace`: spectral subspace, HySime noise estimate, rank and band weights;
* :mod:`.guided`: guided-filter priors (local linear maps from the HR image);
* :mod:`.fourier`: the closed-form subspace solve (Sylvester equation in the Fourier domain) and
  its masked, boundary-aware version on an extended domain (preconditioned conjugate gradients).
"""
