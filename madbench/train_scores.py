"""How much of the train split the score stage scores: only what a later stage reads.

After training, a job scores its test split and, as far as something reads them, its
train split. Who reads the train scores is declared by each of them (``train_reads``):

- the scoring stage's fit: ``m2ad`` (GMMs on the train residuals) and
  ``percentile_threshold`` (train + test percentile) read every train step; ``raw`` with a
  calibration reads the validation steps; ``raw`` alone and ``dynamic_threshold`` (telemanom
  thresholds each test window on its own errors) read nothing;
- the protocols: ``strict`` thresholds on the validation steps, ``tslib`` on every train
  step, ``madcluster`` and ``m2ad`` read none;
- a job's ``rescore`` list (its variants may re-fit any scorer): every train step.

The level is ``none`` < ``validation`` (the steps ``trainer.val_ratio`` holds out) < ``all``.
``score_train=auto`` (the default) scores what the job reads: the windows that cover the
steps read, and the steps before them are NaN ("unscored", as everywhere). On MSL C-1 the
train split is 39% of the scored windows (issue 27). ``score_train=all`` scores every
train step, so that ``madbench-eval`` may later re-score with anything. A run dir records
its level (``scores.npz``), and a re-scoring or an ``evaluate(protocols=...)`` that reads
more than was scored is refused in one line (:func:`check_stored`).
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from madbench import protocols as P
from madbench.errors import ConfigError, DataError
from madbench.scoring import build_scorer

NONE, VALIDATION, ALL = "none", "validation", "all"
LEVELS = (NONE, VALIDATION, ALL)
#: the values of the ``score_train`` config key
MODES = ("auto", ALL)


def covers(have: str, need: str) -> bool:
    """Whether train scores kept at level ``have`` hold what ``need`` reads."""
    return LEVELS.index(have) >= LEVELS.index(need)


def _level(value, who: str) -> str:
    if value not in LEVELS:
        raise ConfigError(f"{who}: train_reads={value!r}; expected one of {', '.join(LEVELS)}")
    return value


def reads(cfg: DictConfig) -> dict[str, str]:
    """{reader: level} of a config's scoring stage and its protocols. A scorer or protocol
    that declares nothing is taken to read every train step (nothing is left unscored by
    mistake)."""
    scorer = build_scorer(cfg)
    out = {f"scoring={cfg.scoring.name} (its fit)": _level(getattr(scorer, "train_reads", ALL), "scoring")}
    for name, pcfg in cfg.protocol.items():
        proto = P.build(str(name), OmegaConf.to_container(pcfg, resolve=True) if pcfg is not None else {})
        out[f"protocol={name}"] = _level(getattr(proto, "train_reads", ALL), f"protocol={name}")
    return out


def needed(cfg: DictConfig) -> tuple[str, list[str]]:
    """(level, reasons) of a composed config: what its scoring stage, its protocols and its
    ``rescore`` list read; ``all`` with ``score_train=all``. A bad ``score_train`` is a
    one-line ConfigError."""
    mode = OmegaConf.select(cfg, "score_train", default="auto")
    if mode not in MODES:
        raise ConfigError(f"score_train={mode!r}; expected one of {', '.join(MODES)}")
    if mode == ALL:
        return ALL, ["score_train=all"]
    levels = reads(cfg)
    if cfg.get("rescore"):
        levels["rescore (its variants may re-fit any scorer)"] = ALL
    level = max(levels.values(), key=LEVELS.index, default=NONE)
    return level, _reasons(levels)


def _reasons(levels: dict[str, str]) -> list[str]:
    return [f"{who} reads {'the validation scores' if v == VALIDATION else 'every train score'}"
            for who, v in levels.items() if v != NONE]


def describe(level: str, reasons: list[str]) -> str:
    """One log line: what the job scores of the train split and why."""
    what = {ALL: "every train step", VALIDATION: "the validation steps only", NONE: "nothing"}[level]
    line = f"train split: scoring {what} ({'; '.join(reasons) if reasons else 'no stage reads it'})"
    if level != ALL:
        line += "; score_train=all keeps every train score for any later re-scoring"
    return line


def check_stored(have: str, cfg: DictConfig, where: str) -> None:
    """Refuse (one-line DataError naming ``where``) scoring or protocols of ``cfg`` that read
    more of the train split than the ``have`` level kept."""
    if have == ALL:
        return
    missing = {who: v for who, v in reads(cfg).items() if not covers(have, v)}
    if not missing:
        return
    kept = {NONE: "no train scores", VALIDATION: "the validation steps' train scores only"}[have]
    raise DataError(f"{where}: kept {kept} (score_train=auto scores what its own stages read), but "
                    f"{'; '.join(_reasons(missing))}; fit again with score_train=all")
