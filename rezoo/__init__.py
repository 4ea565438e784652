"""The rezoo application: the ``rezoo`` console script, its commands and their Hydra configs.

``zoo`` is the library (models, training modules, metrics, weights) and ``datamodules`` the data;
this package is the only one that uses both. Commands: ``rezoo train|eval|infer|score|export|bench|list``.
"""
