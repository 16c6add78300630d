"""madbench-tables: event counts summed per seed, mean ± std over seeds, the paper beside.

Expected values are hand-computed below, and the paper's same-entity figure is recomputed
here with the csv module straight from the per-signal file."""
import csv
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from madbench import tables as T
from madbench.tracking.csv import results_frame

BIN = Path(sys.executable).parent
PER_SIGNAL = Path(T.__file__).parent / "paper" / "m2ad_benchmark_per_signal.csv"


def rows(dataset, name, counts):
    """counts: {seed: {entity: (tp, fp, fn)}} → m2ad result rows, plus ALL rows and noise
    the tables must ignore (another protocol, a failed run)."""
    out = []
    for seed, ents in counts.items():
        for ent, (tp, fp, fn) in ents.items():
            base = dict(dataset=dataset, name=name, seed=seed, scoring="m2ad", status="ok", entity=ent)
            out.append(base | dict(protocol="m2ad", event_tp=tp, event_fp=fp, event_fn=fn, detected_fraction=0.1 * tp))
            out.append(base | dict(protocol="strict", event_tp=99, event_fp=99, event_fn=99))
        out.append(dict(dataset=dataset, name=name, seed=seed, scoring="m2ad", status="ok", entity="ALL",
                        protocol="m2ad", event_tp=1000, event_fp=0, event_fn=0))
        out.append(dict(dataset=dataset, name=name, seed=seed, scoring="m2ad", status="failed", entity="x",
                        protocol="m2ad", event_tp=1000, event_fp=0, event_fn=0))
    return out


COUNTS = {0: {"C-1": (2, 1, 0), "D-14": (1, 0, 1)},   # tp 3 fp 1 fn 1: P = R = F1 = F0.5 = 0.75
          1: {"C-1": (1, 3, 1), "D-14": (0, 0, 1)}}   # tp 1 fp 3 fn 2
F1 = [0.75, 2 * 1 / (2 * 1 + 3 + 2)]
F05 = [0.75, 1.25 * 1 / (1.25 * 1 + 0.25 * 2 + 3)]


def test_per_seed_sums_entities_and_ignores_other_rows():
    g = T.per_seed(results_frame(rows("msl", "m2ad_table2-msl", COUNTS)), ["dataset"])
    assert g.event_tp.tolist() == [3, 1] and g.event_fp.tolist() == [1, 3] and g.event_fn.tolist() == [1, 2]
    assert g.f1.tolist() == pytest.approx(F1) and g.f05.tolist() == pytest.approx(F05)
    assert g.precision.tolist() == pytest.approx([0.75, 0.25]) and g.recall.tolist() == pytest.approx([0.75, 1 / 3])


def paper_by_hand(dataset, signals):
    it = {}
    with open(PER_SIGNAL) as f:
        for r in csv.DictReader(f):
            if r["pipeline"] == "M2AD" and r["dataset"] == dataset and r["signal"] in signals:
                s = it.setdefault(r["iteration"], [0, 0, 0])
                for i, k in enumerate(("tp", "fp", "fn")):
                    s[i] += int(float(r[k]))
    f1 = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in it.values()]
    return statistics.mean(f1), statistics.stdev(f1)


def test_table2_mean_std_over_seeds_and_paper_on_the_same_channels():
    t = T.m2ad_table2(results_frame(rows("msl", "m2ad_table2-msl", COUNTS)))
    r = t.iloc[0]
    assert r.dataset == "MSL (2 entities)" and r.seeds == 2 and r.events == 4
    assert r.ours_f1 == pytest.approx(statistics.mean(F1)) and r.ours_f1_std == pytest.approx(statistics.stdev(F1))
    assert r.ours_f05 == pytest.approx(statistics.mean(F05))
    assert (r.paper_f1, r.paper_f1_std) == (0.749, 0.0317)  # the full-dataset figure, as published
    m, s = paper_by_hand("MSL", {"C-1", "D-14"})
    assert r.paper_same_entities_f1 == pytest.approx(m) and r.paper_same_entities_f1_std == pytest.approx(s)
    assert r.delta_f1 == pytest.approx(statistics.mean(F1) - m)
    # mean over entities, then over seeds: (0.2 + 0.1) / 2 and (0.1 + 0) / 2
    assert r.detected_fraction == pytest.approx((0.15 + 0.05) / 2)


def test_table2_keeps_other_configs_in_the_same_directory_apart():
    both = rows("msl", "m2ad_table2-msl", COUNTS) + rows("msl", "m2ad_ablation-normal+chi2", {0: {"C-1": (0, 5, 2)}})
    t = T.m2ad_table2(results_frame(both))
    assert len(t) == 2 and sorted(t.events) == [2, 4]
    assert set(t.dataset) == {"MSL (2 entities) · m2ad_table2-msl", "MSL (1 entities) · m2ad_ablation-normal+chi2"}
    ablation = T.m2ad_ablation(results_frame(both))  # only the arms; the other run is left out
    assert ablation.variant.tolist() == ["Normal + chi2"]


def test_table2_on_every_paper_channel_is_labelled_as_the_dataset():
    with open(PER_SIGNAL) as f:
        msl = sorted({r["signal"] for r in csv.DictReader(f) if r["pipeline"] == "M2AD" and r["dataset"] == "MSL"})
    assert len(msl) == 27
    t = T.m2ad_table2(results_frame(rows("msl", "x", {0: {s: (1, 0, 0) for s in msl}})))
    assert t.iloc[0].dataset == "MSL" and t.iloc[0].ours_f1 == 1.0


def test_ablation_variants_map_to_the_paper_arms():
    allv = []
    for i, v in enumerate(["normal+std4", "gmm+gamma", "gmm+chi2", "normal+chi2", "normal+gamma", "gmm+std4"]):
        allv += rows("smd", f"m2ad_ablation-{v}", {0: {"machine-1-2": (1 + i, 1, 0)}})
    t = T.m2ad_ablation(results_frame(allv))
    assert t.variant.tolist() == ["GMM + gamma", "Normal + gamma", "GMM + chi2", "Normal + chi2", "4 std (GMM)",
                                  "4 std (Normal)"]
    paper = {r["pipeline"]: float(r["f1_mean"]) for r in csv.DictReader(open(T.PAPER_DIR / "m2ad_ablation.csv"))}
    assert t.paper_f1_mean.tolist() == [paper["GMM + gamma"], paper["Normal + gamma"], paper["GMM + chi2"],
                                        paper["Normal + chi"], paper["4 std"], paper["4 std"]]
    gmm_gamma = t[t.variant == "GMM + gamma"].iloc[0]  # tp 2, fp 1, fn 0
    assert gmm_gamma.f1_mean == pytest.approx(4 / 5) and gmm_gamma.dataset == "SMD (1 entities)"
    # only the method arm has per-machine paper results to recompute on our machines
    m, s = paper_by_hand("SMD", {"machine-1-2"})
    assert gmm_gamma.paper_same_entities_f1 == pytest.approx(m) and gmm_gamma.paper_same_entities_f1_std == pytest.approx(s)
    assert t[t.variant != "GMM + gamma"].paper_same_entities_f1.isna().all()


def test_cli_writes_csv_md_tex_and_refuses_a_missing_path(tmp_path):
    src = tmp_path / "collected.csv"
    results_frame(rows("msl", "m2ad_table2-msl", COUNTS)).to_csv(src, index=False)
    p = subprocess.run([str(BIN / "madbench-tables"), "m2ad_table2", str(src), "--out", str(tmp_path / "t")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "t" / "m2ad_table2.md").read_text()
    assert "0.749 ± 0.032" in md and f"{statistics.mean(F1):.3f} ± {statistics.stdev(F1):.3f}" in md
    assert r"$\pm$" in (tmp_path / "t" / "m2ad_table2.tex").read_text()
    bad = subprocess.run([str(BIN / "madbench-tables"), "m2ad_table2", str(tmp_path / "nope.csv")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "nope.csv" in bad.stderr


def search_run(tmp_path, name, m2ad, scoring, counts, finished):
    """A run dir with a config.yaml (protocol.m2ad and scoring as given) and m2ad rows;
    counts: {entity: (tp, fp, fn, detected_fraction, n_test)}."""
    import yaml

    d = tmp_path / name
    d.mkdir()
    base_scoring = {"name": "m2ad", "error": "point", "distribution": "gmm", "calibration": "gamma", "alpha": 0.001,
                    "two_sided": None}
    (d / "config.yaml").write_text(yaml.safe_dump({"protocol": {"m2ad": {"window": 100, "alpha": None, **m2ad}},
                                                   "scoring": base_scoring | scoring}))
    out = [dict(dataset="msl", name="m2ad_table2-msl", seed=0, scoring="m2ad", status="ok", entity=ent, protocol="m2ad",
                event_tp=tp, event_fp=fp, event_fn=fn, detected_fraction=frac, n_test=n, finished_at=finished,
                run_dir=str(d))
           for ent, (tp, fp, fn, frac, n) in counts.items()]
    return out + [dict(dataset="msl", name="m2ad_table2-msl", seed=0, scoring="m2ad", status="ok", entity="ALL",
                       protocol="m2ad", event_tp=99, event_fp=0, event_fn=0, run_dir=str(d), finished_at=finished)]


def test_search_one_row_per_construction_with_the_paper_beside(tmp_path):
    # the trained run (a config from before protocol.m2ad.grouping: padding 50, two_sided null = one-sided)
    # and a variant that names the same construction explicitly (older: the run's rows win)
    parent = search_run(tmp_path, "run", {"padding": 50}, {}, {"C-1": (2, 1, 0, 0.5, 1000), "D-14": (1, 3, 1, 0.2, 3000)},
                        "2026-01-02")
    same = search_run(tmp_path, "same", {"grouping": "padding", "padding": 50}, {"two_sided": False},
                      {"C-1": (0, 0, 2, 0.0, 1000), "D-14": (0, 0, 2, 0.0, 3000)}, "2026-01-01")
    fwd = search_run(tmp_path, "fwd", {"grouping": "forward", "bridge": 360, "padding": 50}, {"two_sided": True},
                     {"C-1": (2, 0, 0, 0.9, 1000), "D-14": (2, 1, 0, 0.1, 3000)}, "2026-01-03")
    none = search_run(tmp_path, "none", {"grouping": "none", "padding": 50}, {},
                      {"C-1": (1, 7, 1, 0.01, 1000), "D-14": (0, 9, 2, 0.03, 3000)}, "2026-01-03")
    t = T.m2ad_search(results_frame(parent + same + fwd + none))
    assert t.grouping.tolist() == ["padding", "forward", "none"]
    assert t.steps.tolist()[:2] == [50, 360] and t.steps.isna().tolist() == [False, False, True]
    assert t.sided.tolist() == ["one", "two", "one"]
    pad, fw, no = (t.iloc[i] for i in range(3))
    assert (pad.tp, pad.fp, pad.fn) == (3, 4, 1) and pad.f1 == pytest.approx(6 / (6 + 4 + 1))
    assert pad.f05 == pytest.approx(1.25 * 3 / (1.25 * 3 + 0.25 * 1 + 4))
    assert pad.flagged == pytest.approx((0.5 * 1000 + 0.2 * 3000) / 4000)  # pooled over steps, not (0.5 + 0.2) / 2
    assert (fw.tp, fw.fp, fw.fn) == (4, 1, 0) and fw.flagged == pytest.approx((900 + 300) / 4000)
    assert (no.tp, no.fp, no.fn) == (1, 16, 3) and no.events == 4
    m, _ = paper_by_hand("MSL", {"C-1", "D-14"})
    assert (pad.paper_f1, pad.paper_f05) == (0.749, 0.752)
    assert pad.paper_same_entities_f1 == pytest.approx(m) and pad.delta_f1 == pytest.approx(pad.f1 - m)
    with open(PER_SIGNAL) as f:
        paper = [r for r in csv.DictReader(f) if r["pipeline"] == "M2AD" and r["signal"] in ("C-1", "D-14")]
    iterations = {r["iteration"] for r in paper}
    assert pad.paper_fp == pytest.approx(sum(float(r["fp"]) for r in paper) / len(iterations))
    shown = T.render("m2ad_search", t)
    assert shown["padding / bridge"].tolist() == ["50", "360", "—"] and shown.flagged.tolist()[0] == "27.5%"
    assert "alpha" not in shown and "name" not in shown  # the same in every row: not shown


def test_search_needs_each_run_dirs_config(tmp_path):
    rows_ = search_run(tmp_path, "run", {"padding": 50}, {}, {"C-1": (1, 0, 0, 0.1, 100)}, "2026-01-01")
    (tmp_path / "run" / "config.yaml").unlink()
    T.construction.cache_clear()
    with pytest.raises(SystemExit, match="config.yaml is missing"):
        T.m2ad_search(results_frame(rows_))
