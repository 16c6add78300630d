"""``madbench-data``: check a dataset on disk, prepare a raw download, write synthetic data.

    madbench-data check   --dataset msl --root datasets [--window 100]
    madbench-data prepare --dataset smd --raw ~/Downloads/OmniAnomaly --out datasets [--entities machine-1-1]
    madbench-data synth   --out datasets/multisystem [--seed 0 --systems 4 ...]

``--root`` and ``--out`` may be the data dir (``datasets``, what ``paths.data_dir`` points
at) or the dataset's own folder in it (``datasets/NASA``); ``prepare`` writes into
``<out>/<folder>`` unless ``--out`` already ends in the folder's name. Problems are
reported as one line on stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from madbench.data.entity import Entity
from madbench.data.validate import summarize
from madbench.errors import DataError, MadbenchError


@dataclass(frozen=True)
class DatasetSpec:
    loader: str  # "module:function", imported lazily
    kwargs: dict
    folder: str  # under paths.data_dir
    marker: str  # a path that exists in the layout's root
    entities: bool = True  # the loader takes `entities`
    sensors: bool = False  # the loader takes `sensors` (NASA only)


#: loader arguments the dataset YAML wires to other keys (not fixed per dataset)
_WIRED = ("_target_", "_convert_", "root", "entities", "sensors", "min_length")


def datasets_from_configs(config_dir: Path | None = None) -> dict[str, DatasetSpec]:
    """Every on-disk dataset of ``configs/dataset/``: its loader, the loader's fixed
    arguments and its folder under ``paths.data_dir`` come from the YAML (``loader``), the
    marker of its layout from the loader (``layout_marker``). The generated datasets
    (synthetic: no ``root``) are not on disk."""
    import importlib

    from omegaconf import OmegaConf

    from madbench.config import CONFIG_DIR

    out = {}
    for path in sorted(Path(config_dir or CONFIG_DIR / "dataset").glob("*.yaml")):
        loader = OmegaConf.to_container(OmegaConf.load(path).get("loader") or {}, resolve=False)
        root = str(loader.get("root", ""))
        if "${paths.data_dir}/" not in root:
            continue
        mod, _, fn = str(loader["_target_"]).rpartition(".")
        kwargs = {k: v for k, v in loader.items() if k not in _WIRED}
        marker = getattr(getattr(importlib.import_module(mod), fn), "layout_marker")
        out[path.stem] = DatasetSpec(f"{mod}:{fn}", kwargs, root.split("${paths.data_dir}/", 1)[1],
                                     marker.format(**kwargs), entities="entities" in loader,
                                     sensors="sensors" in loader)
    return out


DATASETS: dict[str, DatasetSpec] = datasets_from_configs()


def _loader(spec: DatasetSpec) -> Callable[..., list[Entity]]:
    import importlib

    mod, fn = spec.loader.split(":")
    return getattr(importlib.import_module(mod), fn)


def resolve_root(dataset: str, root: str | Path) -> Path:
    """``root`` itself if it holds the layout, else ``root/<folder>`` if that does; if
    neither does, a DataError that names both places."""
    spec = DATASETS[dataset]
    root = Path(root)
    if (root / spec.marker).exists():
        return root
    if (root / spec.folder / spec.marker).exists():
        return root / spec.folder
    raise DataError(f"{root}: no {dataset} layout: neither {root / spec.marker} nor {root / spec.folder / spec.marker} "
                    f"exists; expected the data dir holding {spec.folder}/ (datasets/README.md), or {spec.folder}/ "
                    "itself")


def dataset_folder(dataset: str, out: str | Path) -> Path:
    """Where ``prepare`` writes: ``out`` when it already ends in the dataset's folder name
    (``datasets/NASA``), else ``out/<folder>`` (``datasets`` → ``datasets/NASA``), so that
    ``paths.data_dir`` is the data dir either way."""
    out = Path(out)
    return out if out.name == DATASETS[dataset].folder else out / DATASETS[dataset].folder


def load_dataset(
    dataset: str, root: str | Path, window: int | None = None, entities="all", sensors: str = "first"
) -> list[Entity]:
    if dataset not in DATASETS:
        raise DataError(f"--dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    spec = DATASETS[dataset]
    kwargs = dict(spec.kwargs, min_length=window)
    if spec.entities:
        kwargs["entities"] = entities
    elif entities != "all":
        raise DataError(f"--entities: {dataset} is a single entity; expected 'all'")
    if spec.sensors:
        kwargs["sensors"] = sensors
    return _loader(spec)(resolve_root(dataset, root), **kwargs)


def _fmt_names(names: list[str], limit: int = 3) -> str:
    if not names:
        return "-"
    return ", ".join(names[:limit]) + (f" +{len(names) - limit}" if len(names) > limit else "")


def render_table(dataset: str, entities: Sequence[Entity], console=None) -> list[dict]:
    """Print one row per entity. Constant sensors are counted (``constant/all``) and, when
    an entity has several sensors, named: a sensor that never moves in train gets no scale
    from the scaler and is worth a look. Constant covariates (NASA's unused command
    columns) are only counted."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    rows = [summarize(e) for e in entities]
    table = Table(title=f"{dataset}: {len(rows)} entities")
    for col in [
        "entity",
        "train",
        "test",
        "sens/cov",
        "label %",
        "events",
        "train NaN/inf",
        "test NaN/inf",
        "const sensors",
        "const cov",
    ]:
        table.add_column(col, justify="left" if col in ("entity", "const sensors") else "right", no_wrap=True)
    for r, e in zip(rows, entities):
        const = set(r["constant_columns"])
        const_s = [c for c in e.sensors if c in const]
        const_c = [c for c in e.covariates if c in const]
        nan_train = f"{r['train_nan']}/{r['train_inf']}" + (f" ({r['imputed']} imputed)" if r["imputed"] else "")
        table.add_row(
            r["entity"],
            "×".join(map(str, r["train"])),
            "×".join(map(str, r["test"])),
            f"{r['sensors']}/{r['covariates']}",
            f"{r['label_pct']:.2f}",
            str(r["events"]),
            nan_train,
            f"{r['test_nan']}/{r['test_inf']}",
            f"{len(const_s)}/{len(e.sensors)}" + (f": {_fmt_names(const_s)}" if const_s and len(e.sensors) > 1 else ""),
            f"{len(const_c)}/{len(e.covariates)}" if e.covariates else "-",
        )
    console.print(table)
    n_test = sum(r["test"][0] for r in rows)
    n_lab = sum(int(e.labels.sum()) for e in entities)
    console.print(
        f"{dataset}: {len(rows)} entities, {sum(r['events'] for r in rows)} events, "
        f"{sum(r['train'][0] for r in rows)} train / {n_test} test rows, "
        f"{100.0 * n_lab / max(n_test, 1):.2f}% of test rows labelled"
    )
    return rows


def cmd_check(args) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entities = load_dataset(args.dataset, args.root, args.window, _entities_arg(args.entities), args.sensors)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    render_table(args.dataset, entities)
    return 0


def _entities_arg(text: str | None):
    if text is None or text == "all":
        return "all"
    return [t.strip() for t in text.split(",") if t.strip()]


# ---------------------------------------------------------------- prepare
def _place(src: Path, dst: Path, symlink: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        if dst.resolve() == src.resolve():
            return
        dst.unlink()
    if symlink:
        dst.symlink_to(src.resolve())
    else:
        shutil.copy2(src, dst)


def _find(raw: Path, pattern: str, what: str, is_dir: bool = False) -> Path:
    """Shallowest match of ``pattern`` under ``raw`` (raw itself included)."""
    hits = [p for p in [raw, *raw.rglob("*")] if p.match(pattern) and (p.is_dir() if is_dir else p.is_file())]
    if not hits:
        raise DataError(f"{raw}: no {pattern} found anywhere below; expected {what}")
    return min(hits, key=lambda p: (len(p.parts), str(p)))


def _stem(f: Path) -> str:
    """An entity's name from its file: ``machine-1-1.txt.gz`` → ``machine-1-1``."""
    return f.name.split(".")[0]


def _copy_dir(src: Path, dst: Path, patterns: Sequence[str], symlink: bool, entities=None) -> int:
    """Copy the files of ``src`` that match ``patterns`` (only those of ``entities`` when
    given; every one asked for must be there)."""
    files = [f for f in sorted(src.iterdir()) if f.is_file() and any(f.match(p) for p in patterns)]
    if entities is not None:
        missing = sorted(set(entities) - {_stem(f) for f in files})
        if missing:
            raise DataError(f"{src}: no file for --entities {', '.join(missing)}; "
                            f"it has {_fmt_names(sorted(_stem(f) for f in files), 5)}")
        files = [f for f in files if _stem(f) in entities]
    for f in files:
        _place(f, dst / f.name, symlink)
    if not files:
        raise DataError(f"{src}: no {' or '.join(patterns)} files; expected the dataset's files here")
    return len(files)


def prepare(dataset: str, raw: str | Path, out: str | Path, symlink: bool = False, entities="all") -> Path:
    """Copy (or symlink) a raw download into the layout the loader reads, in
    ``dataset_folder(dataset, out)``; never downloads. ``entities`` (a list of names, or
    ``all``) limits the per-entity files copied (NASA channels, SMD machines)."""
    raw = Path(raw)
    if dataset not in DATASETS:
        raise DataError(f"--dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    out = dataset_folder(dataset, out)
    if entities != "all" and dataset not in ("msl", "smap", "smd"):
        raise DataError(f"--entities: {dataset} is prepared as a whole; expected 'all'")
    ents = None if entities == "all" else set(entities)
    if not raw.is_dir():
        raise DataError(f"{raw}: directory not found; expected the unpacked raw download")
    if dataset in ("msl", "smap"):
        csv = _find(raw, "labeled_anomalies.csv", "telemanom's labeled_anomalies.csv")
        train = _find(raw, "train", "telemanom's data/train/*.npy", is_dir=True)
        test = train.parent / "test"
        if not test.is_dir():
            raise DataError(f"{test}: directory not found; expected telemanom's data/test/*.npy next to {train}")
        _place(csv, out / "labeled_anomalies.csv", symlink)
        _copy_dir(train, out / "train", ["*.npy"], symlink, ents)
        _copy_dir(test, out / "test", ["*.npy"], symlink, ents)
    elif dataset == "smd":
        base = _find(raw, "test_label", "OmniAnomaly's ServerMachineDataset/test_label", is_dir=True).parent
        pats = ["machine-*.txt", "machine-*.txt.gz"]
        for sub in ("train", "test", "test_label"):
            if not (base / sub).is_dir():
                raise DataError(f"{base / sub}: directory not found; expected OmniAnomaly's {sub}/machine-X-Y.txt")
            _copy_dir(base / sub, out / sub, pats, symlink, ents)
        if (base / "interpretation_label").is_dir():
            _copy_dir(base / "interpretation_label", out / "interpretation_label", pats, symlink, ents)
    elif dataset == "psm":
        base = _find(raw, "test_label.csv", "PSM's train.csv, test.csv, test_label.csv").parent
        for name in ("train.csv", "test.csv", "test_label.csv"):
            src = base / name
            if not src.is_file():
                raise DataError(f"{src}: file not found; expected PSM's {name} next to test_label.csv")
            _place(src, out / name, symlink)
    elif dataset in ("msl_merged", "smap_merged", "smd_merged"):
        name = dataset.split("_")[0].upper()
        base = _find(raw, f"{name}_train.npy", f"{name}_train.npy, {name}_test.npy, {name}_test_label.npy").parent
        for part in ("train", "test", "test_label"):
            src = base / f"{name}_{part}.npy"
            if not src.is_file():
                raise DataError(f"{src}: file not found; expected it next to {name}_train.npy")
            _place(src, out / src.name, symlink)
    elif dataset == "multisystem":
        raise DataError(
            f"{raw}: prepare has nothing to convert for multisystem; expected you to write the layout "
            "of datasets/README.md (or use `madbench-data synth`)"
        )
    else:
        raise DataError(f"--dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    return out


def cmd_prepare(args) -> int:
    out = prepare(args.dataset, args.raw, args.out, args.symlink, _entities_arg(args.entities))
    print(f"prepared {args.dataset} in {out} (train with paths.data_dir={out.parent})", file=sys.stderr)
    args.root = out
    return cmd_check(args)


# ---------------------------------------------------------------- synth
def cmd_synth(args) -> int:
    from madbench.data import synthetic  # written separately; imported only when asked for
    from madbench.data.multisystem import write_multisystem

    entities = synthetic.load(
        n_systems=args.systems,
        n_sensors=args.n_sensors,
        n_covariates=args.covariates,
        train_len=args.train_len,
        test_len=args.test_len,
        anomaly_ratio=args.anomaly_ratio,
        seed=args.seed,
    )
    out = write_multisystem(entities, args.out)
    print(f"wrote {len(entities)} synthetic systems to {out}", file=sys.stderr)
    args.dataset, args.root, args.entities, args.sensors = "multisystem", out, None, "first"
    return cmd_check(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="madbench-data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--window", type=int, default=100, help="minimum series length (dataset.window)")
        sp.add_argument("--entities", default=None, help="comma-separated names (default: all)")
        sp.add_argument("--sensors", choices=("first", "all"), default="first", help="NASA only")

    c = sub.add_parser("check", help="load, validate and summarise a dataset")
    c.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    c.add_argument("--root", required=True, help="the dataset folder, or the data dir above it")
    common(c)
    c.set_defaults(func=cmd_check)

    pr = sub.add_parser("prepare", help="copy a raw download into the expected layout, then check it")
    pr.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    pr.add_argument("--raw", required=True, help="the unpacked download")
    pr.add_argument("--out", required=True,
                    help="the data dir (paths.data_dir, e.g. datasets: writes datasets/NASA) or the dataset folder")
    pr.add_argument("--symlink", action="store_true", help="symlink the files instead of copying them")
    common(pr)
    pr.set_defaults(func=cmd_prepare)

    s = sub.add_parser("synth", help="write the synthetic generator's systems in the multisystem layout")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--systems", type=int, default=4)
    s.add_argument("--sensors", dest="n_sensors", type=int, default=8, help="sensors per system")
    s.add_argument("--covariates", type=int, default=4)
    s.add_argument("--train-len", type=int, default=3000)
    s.add_argument("--test-len", type=int, default=3000)
    s.add_argument("--anomaly-ratio", type=float, default=0.05)
    s.add_argument("--window", type=int, default=100)
    s.set_defaults(func=cmd_synth)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MadbenchError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
