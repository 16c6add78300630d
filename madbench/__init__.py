"""madbench: a benchmark harness for multivariate time-series anomaly detection."""

__version__ = "0.1.0"
