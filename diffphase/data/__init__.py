"""Data laws and generators: linear-manifold Gaussians, sphere-normalized data and mixtures
(:mod:`~diffphase.data.laws`), tangent laws of data on a subspace (:mod:`~diffphase.data.tangent`),
the random hierarchy model (:mod:`~diffphase.data.rhm`) and its noise channels
(:mod:`~diffphase.data.channels`). Dataset loaders belong here too. This layer imports only the
base modules and :mod:`diffphase.theory`."""
