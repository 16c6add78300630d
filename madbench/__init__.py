"""madbench: a benchmark harness for multivariate time-series anomaly detection.

``madbench.Detector`` is the Python API (``madbench.api``): any backbone, objective, head
and scoring of the config groups as an estimator on arrays (``help(madbench.Detector)``).
"""

__version__ = "0.1.0"
__all__ = ["Detector", "Scores"]


def __getattr__(name: str):
    # imported on first use: the console scripts (and every `import madbench.<module>`)
    # start without torch and scikit-learn
    if name in __all__:
        from madbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'madbench' has no attribute {name!r}")
