"""The merged TSLib / Anomaly-Transformer layout shared by MSL, SMAP and SMD.

``root`` holds ``<NAME>_train.npy`` [T, D], ``<NAME>_test.npy`` [T', D] and
``<NAME>_test_label.npy`` [T'] (0/1). All channels or machines are concatenated into one
series, so the dataset is one entity and every column is a sensor.
"""

from __future__ import annotations

from pathlib import Path

from madbench.data.entity import Entity
from madbench.data.validate import check_2d, check_dims, check_labels, events_from_labels, load_npy, validate_entity


def load_merged_npy(root: str | Path, name: str, columns: list[str], min_length: int | None = None) -> Entity:
    root = Path(root)
    paths = {k: root / f"{name}_{k}.npy" for k in ("train", "test", "test_label")}
    dims = len(columns)
    what = f"merged {name} as a [time, {dims}] array"
    train = check_2d(load_npy(paths["train"], what), paths["train"], what)
    test = check_2d(load_npy(paths["test"], what), paths["test"], what)
    check_dims(train, dims, paths["train"], name)
    check_dims(test, dims, paths["test"], name)
    raw = load_npy(paths["test_label"], f"one 0/1 label per row of {paths['test'].name}")
    labels = check_labels(raw, len(test), paths["test_label"], paths["test"])
    entity = Entity(
        name=name,
        system=name,
        train=train,
        test=test,
        labels=labels,
        columns=list(columns),
        sensors=list(columns),
        meta={
            "events": events_from_labels(labels),
            "source": {"train": str(paths["train"]), "test": str(paths["test"]), "labels": str(paths["test_label"])},
        },
    )
    return validate_entity(entity, min_length=min_length)
