"""The sinks a job logs to beyond its run dir's files (``logger.<name>`` nodes)."""
from __future__ import annotations

from madbench.config import build


def instantiate_loggers(cfg) -> list:
    """Every ``logger.<name>`` node with a ``_target_`` (the run-dir CSV files are always
    written and need none)."""
    out = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is not None and "_target_" in node:
            out.append(build(node, f"logger={name}", prefix=f"logger.{name}"))
    return out
