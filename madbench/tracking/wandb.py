"""W&B sink: offline unless the user is logged in; ``finish()`` always runs.

One W&B run per job, grouped by sweep and tagged with the config choices, so a sweep of N
jobs gives N runs (the anchors lose all but one when ``finish()`` is skipped). ``job_type``
is the experiment (``experiment=m2ad_table2``), else the hparams search, else ``run``.

Cluster nodes are often offline: runs then stay in ``<run dir>/wandb/offline-run-*`` and
``madbench-wandb-sync OUTPUTS`` uploads every one not yet synced.
"""
from __future__ import annotations

import argparse
import logging
import netrc
import os
import shutil
import subprocess
import sys
from pathlib import Path

from madbench.errors import ConfigError

log = logging.getLogger(__name__)


def logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC", str(Path.home() / ".netrc")))
        return any("wandb" in host for host in rc.hosts)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str | None) -> str:
    if mode:
        return str(mode)
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if logged_in() else "offline"


def hydra_choices() -> dict:
    """The config-group choices of the running Hydra job ({} outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return dict(HydraConfig.get().runtime.choices)
    except (ValueError, ImportError):
        return {}


def default_job_type(choices: dict | None = None) -> str:
    choices = hydra_choices() if choices is None else choices
    return str(choices.get("experiment") or choices.get("hparams_search") or "run")


def _choice_tags(choices: dict) -> list[str]:
    return [f"{g}={choices[g]}" for g in ("experiment", "hparams_search") if choices.get(g)]


class WandbLogger:
    MODES = ("online", "offline", "disabled")

    def __init__(self, project: str = "madbench", entity: str | None = None, mode: str | None = None,
                 group: str | None = None, job_type: str | None = None, tags=()):
        if mode is not None and mode not in self.MODES:
            raise ConfigError(f"logger.wandb.mode={mode!r}; expected null (offline unless logged in) or one of "
                              f"{', '.join(self.MODES)}")
        self.project, self.entity, self.mode = project, entity, mode
        self.group, self.job_type, self.tags = group, job_type, list(tags or [])
        self.run = None

    def start(self, config: dict, run_dir: Path, name: str, group: str | None, tags: list[str], run_id: str):
        import wandb

        choices = hydra_choices()
        tags = sorted(set(self.tags + list(tags) + _choice_tags(choices)))[:64]
        self.run = wandb.init(
            project=self.project, entity=self.entity, config=config, dir=str(run_dir), name=name,
            group=self.group or group, job_type=self.job_type or default_job_type(choices), tags=tags,
            mode=resolve_mode(self.mode), id=run_id, resume="allow",
        )
        return self

    def log_epoch(self, entity: str, rec: dict) -> None:
        self.run.log({f"train/{entity}/{k}": v for k, v in rec.items() if k != "epoch"} | {"epoch": rec["epoch"]})

    def log_results(self, df) -> None:
        import wandb

        clean = df.astype(object).where(df.notna(), None)
        self.run.log({"results": wandb.Table(dataframe=clean)})
        for _, r in df[df["entity"] == "ALL"].iterrows():
            key = f"{r['protocol']}/{r['aggregate']}" if r.get("aggregate") else r["protocol"]
            for c, v in r.items():
                if isinstance(v, (int, float)) and v == v and c not in ("seed",):
                    self.run.summary[f"{key}/{c}"] = v

    def log_image(self, name: str, path: Path) -> None:
        import wandb

        self.run.log({f"plots/{name}": wandb.Image(str(path))})

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


# -- madbench-wandb-sync ---------------------------------------------------------------------
def offline_runs(roots, include_synced: bool = False) -> list[Path]:
    """``wandb/offline-run-*`` dirs under ``roots``; those already synced (wandb leaves a
    ``*.wandb.synced`` marker) only with ``include_synced``."""
    runs = []
    for root in roots:
        for d in sorted(Path(root).rglob("offline-run-*")):
            if d.is_dir() and d.parent.name == "wandb" and (include_synced or not any(d.glob("*.wandb.synced"))):
                runs.append(d)
    return runs


def sync_main(argv=None) -> None:
    """madbench-wandb-sync OUTPUTS... [--all] [--dry-run] [wandb sync options]"""
    ap = argparse.ArgumentParser(
        prog="madbench-wandb-sync",
        description="Upload every offline W&B run under OUTPUTS with `wandb sync` (runs already synced are skipped). "
                    "Options it does not know (e.g. --project, --entity) are passed to `wandb sync`.")
    ap.add_argument("roots", nargs="+", type=Path, help="outputs/, a sweep dir or a run dir")
    ap.add_argument("--all", action="store_true", help="also re-upload runs already synced")
    ap.add_argument("--dry-run", action="store_true", help="list the offline runs, upload nothing")
    a, extra = ap.parse_known_args(argv)
    for r in a.roots:
        if not r.is_dir():
            print(f"madbench-wandb-sync: error: {r} is not a directory", file=sys.stderr)
            sys.exit(2)
    runs = offline_runs(a.roots, include_synced=a.all)
    if a.dry_run or not runs:
        for d in runs:
            print(d)
        print(f"{len(runs)} offline run(s) to sync", flush=True)
        return
    exe = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
    if exe is None:
        print("madbench-wandb-sync: error: the wandb CLI is not installed (pip install 'madbench[wandb]')", file=sys.stderr)
        sys.exit(1)
    if not logged_in():
        print("madbench-wandb-sync: error: not logged in to W&B; run `wandb login` or set WANDB_API_KEY", file=sys.stderr)
        sys.exit(1)
    failed = 0
    for i in range(0, len(runs), 50):  # keep command lines short
        chunk = [str(d) for d in runs[i:i + 50]]
        failed += subprocess.run([exe, "sync", *extra, *chunk], check=False).returncode != 0
    print(f"synced {len(runs)} offline run(s)" + (f"; {failed} `wandb sync` call(s) failed" if failed else ""), flush=True)
    if failed:
        sys.exit(1)
