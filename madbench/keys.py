"""Which config keys change a result: declared once, read by everything that needs it.

Every key of a composed config has one role:

- ``label``: names a run and changes no number (``name``, ``experiment_name``, ``tags``);
- ``runtime``: how and where a job runs, not what it computes (paths, loggers, the
  launcher, progress bars, the evaluation batch, which device was asked for, CPU threads,
  whether torch's deterministic algorithms are forced, the sweep's own bookkeeping);
- ``post_score``: read only after the score stage, so it can change without training
  (``madbench-eval`` re-scores it): the scoring stage, the protocols, the attribution,
  which factor of a head's score is final, the anomaly ratio the tslib protocol reads;
- ``training``: everything else. It shapes the trained model and its scores.

``config_hash`` hashes the ``training`` and ``post_score`` keys; re-scoring may change the
``post_score`` keys, the labels and the loggers (never a training key); two runs pair in a
paired table when every ``training`` and ``post_score`` key but the paired one is equal.
A role is declared for a key and covers everything below it (``scoring`` covers
``scoring.alpha``); the most specific declaration wins (``trainer.device`` is runtime,
the rest of ``trainer`` is training).

``device_type`` (cpu, cuda, mps), which a job records itself, is a training key: a CPU
and a CUDA result of one config are two results (``trainer.deterministic=auto`` turns
determinism on only on the CPU).
"""
from __future__ import annotations

import hashlib
import json

LABEL = ("name", "experiment_name", "pipeline_name", "arm", "tags")
RUNTIME = ("paths", "logger", "hydra", "skip_done", "optimize_metric", "rescore", "rescored_from",
           "score_train",
           "trainer.progress", "trainer.eval_batch_size", "trainer.eval_batch_bytes", "trainer.allocator",
           "trainer.device", "trainer.num_threads", "trainer.log_every_s", "trainer.deterministic",
           "trainer.onednn_cache", "backbone.recipe.onednn_cache")
POST_SCORE = ("scoring", "protocol", "attribution", "dataset.anomaly_ratio", "head.score")
#: keys every collected table carries as ``config.<key>`` columns whether or not they differ
#: between its runs (madbench.tracking.collect): the ones the reports read by name, and the
#: sizes a reader of a committed table wants to see beside it
REPORTED = ("seed", "device_type", "dataset.window", "dataset.stride", "dataset.shard", "trainer.epochs",
            "backbone.baseline", "head.k", "head.score", "head.mapping", "scoring.error", "scoring.distribution",
            "scoring.calibration", "scoring.two_sided", "scoring.alpha", "protocol.m2ad.grouping",
            "protocol.m2ad.padding", "protocol.m2ad.bridge", "scoring.pot_level")
#: keys a job writes into its own config (``madbench.run.record_device_type``), which no config file sets
RECORDED = ("device_type",)
ROLES = {**{k: "label" for k in LABEL}, **{k: "runtime" for k in RUNTIME}, **{k: "post_score" for k in POST_SCORE}}
#: the roles config_hash reads (the others never change a number)
HASHED_ROLES = ("training", "post_score")


def role(key: str) -> str:
    """The role of a dotted config key: the most specific declaration that covers it,
    else ``training``."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        found = ROLES.get(".".join(parts[:i]))
        if found is not None:
            return found
    return "training"


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested config container → {dotted key: leaf value} (lists are leaves)."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def keep_roles(tree: dict, roles, prefix: str = "") -> dict:
    """A copy of a nested config container with only the keys whose role is in ``roles``
    (a node none of whose keys is kept disappears)."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            # a node declared as a whole keeps or drops its whole subtree
            if key in ROLES:
                if ROLES[key] in roles and not _declared_below(key):
                    out[k] = v
                    continue
            sub = keep_roles(v, roles, key + ".")
            if sub:
                out[k] = sub
        elif role(key) in roles:
            out[k] = v
    return out


def _declared_below(key: str) -> bool:
    return any(k.startswith(key + ".") for k in ROLES)


def hashed(tree: dict) -> dict:
    """What ``config_hash`` reads of a resolved config container. ``attribution: auto`` and
    the default ``head.score`` are left out, so runs from before those keys existed keep
    their hash."""
    c = keep_roles(tree, HASHED_ROLES)
    if c.get("attribution", "auto") == "auto":
        c.pop("attribution", None)
    head = c.get("head") or {}
    if head.get("score") == ("backbone" if head.get("name", "none") == "none" else "product"):
        # the default final score (head.score) likewise
        head.pop("score")
    return c


def digest(tree: dict) -> str:
    """sha1 (12 hex digits) of the hashed part of a resolved config container."""
    blob = json.dumps(hashed(tree), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def covers(key: str, group: str) -> bool:
    """Whether ``key`` is ``group`` or a key inside it."""
    return key == group or key.startswith(group + ".")


def rescorable(key: str) -> bool:
    """Whether ``madbench-eval`` may change ``key`` without training: a ``post_score`` key,
    a label, or where the variant is logged (``logger``). Other runtime keys (paths, the
    launcher) mean nothing to a re-scoring."""
    return role(key) in ("post_score", "label") or covers(key, "logger")


def compared(key: str) -> bool:
    """Whether ``key`` must be equal for two runs to pair (it changes a number)."""
    return role(key) in HASHED_ROLES
