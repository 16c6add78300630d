"""madbench-tables: event counts summed per seed, mean ± std over seeds, the paper beside.

Expected values are hand-computed below, the paper's same-entity figures included: they were
worked out once by hand from the authors' per-signal file (madbench/paper/, identical to
../shared/paper_tables/m2ad_benchmark_per_signal.csv) and are written here as numbers."""
import argparse
import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from madbench import reports
from madbench.errors import MadbenchError
from madbench.reports import m2ad as RM
from madbench.reports import pairs as RP
from madbench.reports.base import PAPER_DIR, load_results
from madbench.rundir import results_frame
from tests.conftest import script

PER_SIGNAL = PAPER_DIR / "m2ad_benchmark_per_signal.csv"


def table(name, df, **args):
    """The report's table of numbers, as ``madbench-tables NAME`` computes it."""
    return reports.REPORTS[name].compute(df, argparse.Namespace(**args))


def render(name, t, **args):
    return reports.REPORTS[name].render(t, argparse.Namespace(**args))


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
    g = RM.per_seed(results_frame(rows("msl", "m2ad_table2-msl", COUNTS)), ["dataset"])
    assert g.event_tp.tolist() == [3, 1] and g.event_fp.tolist() == [1, 3] and g.event_fn.tolist() == [1, 2]
    assert g.f1.tolist() == pytest.approx(F1) and g.f05.tolist() == pytest.approx(F05)
    assert g.precision.tolist() == pytest.approx([0.75, 0.25]) and g.recall.tolist() == pytest.approx([0.75, 1 / 3])


# M2AD's rows of m2ad_benchmark_per_signal.csv for the entities used below (pipeline,dataset,
# signal,iteration,tp,fp,fn), summed per iteration, F1 = 2tp / (2tp + fp + fn):
#   MSL C-1:  iterations 0-4 all tp 2 fp 0 fn 0
#   MSL D-14: iterations 0-4 tp 2 fn 0; fp 0 except iteration 2 (fp 1)
#   → per iteration tp 4, fn 0, fp 0 0 1 0 0 → F1 1, 1, 8/9, 1, 1
#     mean 44/45; deviations 1/45 (×4) and −4/45 → variance (4 + 16)/45² / 4 = 1/405
MSL_C1_D14 = (44 / 45, (1 / 405) ** 0.5)
#   SMD machine-1-2: (tp, fp, fn) = (8, 6, 2), (7, 5, 3), (8, 6, 2), (7, 5, 3), (8, 6, 2)
#   → F1 16/24 = 2/3 (×3) and 14/22 = 7/11 (×2); mean (2 + 14/11) / 5 = 36/55
#     deviations 2/165 (×3) and −3/165 (×2) → variance (12 + 18)/165² / 4 = 7.5/165²
SMD_1_2 = (36 / 55, 7.5 ** 0.5 / 165)


def test_table2_mean_std_over_seeds_and_paper_on_the_same_channels():
    t = table("m2ad_table2", results_frame(rows("msl", "m2ad_table2-msl", COUNTS)))
    r = t.iloc[0]
    assert (r.dataset, r.row, r.entities, r.paper_entities_match) == ("MSL", "M2AD", 2, False)
    assert r.seeds == 2 and r.events == 4
    assert r.ours_f1 == pytest.approx(statistics.mean(F1)) and r.ours_f1_std == pytest.approx(statistics.stdev(F1))
    assert r.ours_f05 == pytest.approx(statistics.mean(F05))
    assert (r.paper_f1, r.paper_f1_std) == (0.749, 0.0317)  # the full-dataset figure, as published
    m, s = MSL_C1_D14
    assert (m, s) == pytest.approx((0.977778, 0.049690), abs=1e-6)
    assert r.paper_same_entities_f1 == pytest.approx(m) and r.paper_same_entities_f1_std == pytest.approx(s)
    assert r.delta_f1 == pytest.approx(statistics.mean(F1) - m)
    # mean over entities, then over seeds: (0.2 + 0.1) / 2 and (0.1 + 0) / 2
    assert r.detected_fraction == pytest.approx((0.15 + 0.05) / 2)


def test_table2_keeps_other_configs_in_the_same_directory_apart():
    both = rows("msl", "m2ad_table2-msl", COUNTS) + rows("msl", "m2ad_ablation-normal+chi2", {0: {"C-1": (0, 5, 2)}})
    t = table("m2ad_table2", results_frame(both))
    assert len(t) == 2 and sorted(t.events) == [2, 4]
    assert set(t.row) == {"M2AD", "m2ad_ablation-normal+chi2"} and set(t.dataset) == {"MSL"}
    ablation = table("m2ad_ablation", results_frame(both))  # only the arms; the other run is left out
    assert ablation.variant.tolist() == ["Normal + chi2"]


def test_table2_on_every_paper_channel_is_labelled_as_the_dataset():
    with open(PER_SIGNAL) as f:
        msl = sorted({r["signal"] for r in csv.DictReader(f) if r["pipeline"] == "M2AD" and r["dataset"] == "MSL"})
    assert len(msl) == 27
    t = table("m2ad_table2", results_frame(rows("msl", "m2ad_table2-msl", {0: {s: (1, 0, 0) for s in msl}})))
    assert t.iloc[0].dataset == "MSL" and t.iloc[0].paper_entities_match and t.iloc[0].ours_f1 == 1.0


def test_ablation_variants_map_to_the_paper_arms():
    allv = []
    for i, v in enumerate(["normal+std4", "gmm+gamma", "gmm+chi2", "normal+chi2", "normal+gamma", "gmm+std4"]):
        allv += rows("smd", f"m2ad_ablation-{v}", {0: {"machine-1-2": (1 + i, 1, 0)}})
    t = table("m2ad_ablation", results_frame(allv))
    assert t.variant.tolist() == ["GMM + gamma", "Normal + gamma", "GMM + chi2", "Normal + chi2", "4 std (GMM)",
                                  "4 std (Normal)"]
    paper = {r["pipeline"]: float(r["f1_mean"]) for r in csv.DictReader(open(PAPER_DIR / "m2ad_ablation.csv"))}
    assert t.paper_f1_mean.tolist() == [paper["GMM + gamma"], paper["Normal + gamma"], paper["GMM + chi2"],
                                        paper["Normal + chi"], paper["4 std"], paper["4 std"]]
    gmm_gamma = t[t.variant == "GMM + gamma"].iloc[0]  # tp 2, fp 1, fn 0
    assert gmm_gamma.f1_mean == pytest.approx(4 / 5) and gmm_gamma.dataset == "SMD (1 entity)"
    # only the method arm has per-machine paper results to recompute on our machines
    m, s = SMD_1_2
    assert (m, s) == pytest.approx((0.654545, 0.016598), abs=1e-6)
    assert gmm_gamma.paper_same_entities_f1 == pytest.approx(m) and gmm_gamma.paper_same_entities_f1_std == pytest.approx(s)
    assert t[t.variant != "GMM + gamma"].paper_same_entities_f1.isna().all()


@pytest.mark.slow
def test_cli_writes_csv_md_tex_and_refuses_a_missing_path(tmp_path):
    src = tmp_path / "collected.csv"
    results_frame(rows("msl", "m2ad_table2-msl", COUNTS)).to_csv(src, index=False)
    p = script("madbench-tables", "m2ad_table2", str(src), "--out", str(tmp_path / "t"))
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "t" / "m2ad_table2.md").read_text()
    assert "0.749 ± 0.032" in md and f"{statistics.mean(F1):.3f} ± {statistics.stdev(F1):.3f}" in md
    assert r"$\pm$" in (tmp_path / "t" / "m2ad_table2.tex").read_text()
    bad = script("madbench-tables", "m2ad_table2", str(tmp_path / "nope.csv"))
    assert bad.returncode != 0 and "nope.csv" in bad.stderr


# -- MADCluster appendix Table 3 ----------------------------------------------------------------
def mc_rows():
    """Two seeds × four arms on MSL: the madcluster protocol's ALL (entity mean) row, the strict
    macro row, and noise the table must ignore (an entity row, a failed run)."""
    f1 = {"none": (0.30, 0.34), "distance_only": (0.40, 0.44), "clustering_only": (0.20, 0.30),
          "madcluster": (0.60, 0.50)}
    out = []
    for head, per_seed in f1.items():
        for seed, v in enumerate(per_seed):
            base = dict(dataset="msl", backbone="deepsvdd", head=head, seed=seed, status="ok", entity="ALL")
            out.append(base | dict(protocol="madcluster", aggregate="mean", f1=v, aff_precision=v / 2,
                                   aff_recall=1 - v, vus_roc=0.5, vus_pr=0.2, n_entities=27))
            out.append(base | dict(protocol="strict", aggregate="macro", f1=v / 10))
            out.append(base | dict(protocol="strict", aggregate="micro", f1=0.99))
            out.append(base | dict(protocol="madcluster", entity="C-1", f1=0.99))
        out.append(dict(dataset="msl", backbone="deepsvdd", head=head, seed=9, status="failed", entity="ALL",
                        protocol="madcluster", f1=0.0))
    return results_frame(out)


def test_madcluster_t3_means_over_seeds_and_the_paper_beside():
    """Runs from before the arm group: each head is its own row, the paper's method by head."""
    t = table("madcluster_t3", mc_rows()).set_index("arm")
    assert list(t.index) == ["head=none", "head=distance_only", "head=clustering_only", "head=madcluster"]
    m = t.loc["head=madcluster"]
    assert m.f1_mean == pytest.approx(0.55) and m.f1_std == pytest.approx(statistics.stdev([0.6, 0.5]))
    assert m.aff_precision_mean == pytest.approx(0.275) and m.strict_f1_mean == pytest.approx(0.055)
    assert (t.seeds == 2).all() and (t.entities == 27).all()
    # the paper's appendix T3 on MSL: DeepSVDD .37, Clustering .30, MADCluster .52
    assert t.loc["head=distance_only", "paper_f1"] == 0.37 and t.loc["head=clustering_only", "paper_f1"] == 0.30
    assert m.paper_aff_recall == 0.99 and t.loc["head=none", "paper_f1"] != t.loc["head=none", "paper_f1"]
    # each arm against the paper's DeepSVDD row (here distance mapping alone): ours 0.55 − 0.42, the paper's .52 − .37
    assert m.delta_f1_vs_deepsvdd == pytest.approx(0.13) and m.paper_delta_f1_vs_deepsvdd == pytest.approx(0.15)
    assert t.loc["head=clustering_only", "delta_f1_vs_deepsvdd"] == pytest.approx(-0.17)


def test_madcluster_t3_joins_shard_runs_weighted_by_their_entities():
    """One config split into two runs by dataset.shard (9 and 18 channels): the table's entity
    mean is over all 27, so each run's ALL row counts by its entity count."""
    rows = []
    for n, f1 in ((9, 0.3), (18, 0.6)):
        base = dict(dataset="msl", backbone="deepsvdd", head="madcluster", seed=0, status="ok", entity="ALL")
        rows.append(base | dict(protocol="madcluster", aggregate="mean", f1=f1, aff_precision=f1, aff_recall=f1,
                                vus_roc=0.5, vus_pr=0.2, n_entities=n))
        rows.append(base | dict(protocol="strict", aggregate="macro", f1=f1 / 10, n_entities=n))
    t = table("madcluster_t3", results_frame(rows)).set_index("arm")
    assert t.loc["head=madcluster", "entities"] == 27
    assert t.loc["head=madcluster", "f1_mean"] == pytest.approx((9 * 0.3 + 18 * 0.6) / 27)
    assert t.loc["head=madcluster", "strict_f1_mean"] == pytest.approx((9 * 0.03 + 18 * 0.06) / 27)


def test_madcluster_t3_pairs_each_arm_with_the_deepsvdd_arm_entity_by_entity():
    """The paper's claim is an arm against the Deep SVDD arm, so each row carries that paired
    comparison (per-entity F1, seeds averaged per entity), not only a difference of means.
    Six channels; the madcluster arm beats Deep SVDD on every one (by d + 0.00 in seed 0 and
    d + 0.02 in seed 1: d + 0.01 averaged), so the mean gain is mean(d) + 0.01 and the exact
    two-sided Wilcoxon p of six positive differences is 2 / 2**6; the clustering arm equals
    Deep SVDD on three channels and is 0.3 below on the others, a loss that Wilcoxon cannot
    show on three non-zero differences (p 0.25: no difference shown)."""
    ents = [f"C-{i}" for i in range(1, 7)]
    base = np.array([0.10, 0.20, 0.30, 0.40, 0.50, 0.60])
    d = np.array([0.05, 0.10, 0.02, 0.08, 0.04, 0.06])
    f1 = {("deepsvdd", 0): base, ("deepsvdd", 1): base, ("madcluster", 0): base + d,
          ("madcluster", 1): base + d + 0.02, ("clustering", 0): base - [0, 0.3, 0, 0.3, 0, 0.3],
          ("clustering", 1): base - [0, 0.3, 0, 0.3, 0, 0.3]}
    out = []
    for (arm, seed), vals in f1.items():
        run = dict(dataset="msl", backbone="deepsvdd", arm=arm, seed=seed, status="ok", protocol="madcluster")
        out += [run | dict(entity=e, f1=v) for e, v in zip(ents, vals)]
        out.append(run | dict(entity="ALL", aggregate="mean", f1=vals.mean(), aff_precision=0.5, aff_recall=0.9,
                              vus_roc=0.5, vus_pr=0.2, n_entities=6))
    t = table("madcluster_t3", results_frame(out)).set_index("arm")
    m, c = t.loc["madcluster"], t.loc["clustering"]
    assert m.vs_deepsvdd == pytest.approx(d.mean() + 0.01) == pytest.approx(m.delta_f1_vs_deepsvdd)
    assert m.vs_deepsvdd_p == pytest.approx(2 / 2 ** 6) and m.vs_deepsvdd_entities == 6
    assert 0 < m.vs_deepsvdd_ci_low < m.vs_deepsvdd < m.vs_deepsvdd_ci_high and m.vs_deepsvdd_verdict == "gain"
    assert c.vs_deepsvdd == pytest.approx(-0.15) and c.vs_deepsvdd_p == pytest.approx(0.25)
    assert c.vs_deepsvdd_verdict == "no difference shown"
    assert t.loc["deepsvdd", "vs_deepsvdd_verdict"] == "(the reference)"
    cells = render("madcluster_t3", t.reset_index()).set_index("arm")["ΔF1 vs Deep SVDD ours"]
    assert cells["madcluster"] == (f"{d.mean() + 0.01:+.3f} [{m.vs_deepsvdd_ci_low:+.3f}, "
                                   f"{m.vs_deepsvdd_ci_high:+.3f}], p 0.031: gain")
    assert cells["deepsvdd"] == "(the reference)"


def test_madcluster_tables_need_madcluster_protocol_rows():
    df = mc_rows()
    with pytest.raises(MadbenchError, match="no protocol=madcluster results"):
        table("madcluster_t3", df[df.protocol == "strict"])


# -- appendix Table 2 and paired comparisons ------------------------------------------------------
def t2_results(tmp_path, differ=None):
    """Run dirs (config.yaml + rows) for 2 backbones × 2 heads × 2 seeds × 3 entities: the
    madcluster head adds exactly +0.1 F1 on deepsvdd's entities and nothing on lstm's."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_cfg, script

    base = {"C-1": 0.3, "D-14": 0.5, "M-6": 0.2, "T-8": 0.4, "P-15": 0.25, "S-2": 0.35}
    rows = []
    for backbone in ("deepsvdd", "lstm"):
        for head in ("none", "madcluster"):
            for seed in (0, 1):
                over = [f"backbone={backbone}", f"head={head}", f"seed={seed}"]
                if differ and head == "madcluster" and backbone == "lstm":
                    over.append(differ)
                cfg = compose_cfg(over)
                run_dir = tmp_path / f"{backbone}-{head}-{seed}"
                run_dir.mkdir()
                OmegaConf.save(cfg, run_dir / "config.yaml")
                rid = f"{backbone}{head}{seed}"
                gain = 0.1 if (head == "madcluster" and backbone == "deepsvdd") else 0.0
                ent = {e: v + gain + 0.01 * seed for e, v in base.items()}
                common = dict(run_id=rid, run_dir=str(run_dir), dataset="msl", backbone=backbone, head=head, seed=seed,
                              status="ok")
                for e, v in ent.items():
                    rows.append(common | dict(entity=e, protocol="madcluster", f1=v))
                rows.append(common | dict(entity="ALL", protocol="madcluster", aggregate="mean",
                                          f1=float(np.mean(list(ent.values()))), vus_roc=0.6, vus_pr=0.3, n_entities=3))
    return results_frame(rows)


def test_madcluster_t2_pairs_entities_and_puts_the_paper_beside(tmp_path):
    t = table("madcluster_t2", t2_results(tmp_path), metric="f1").set_index("backbone")
    d = t.loc["deepsvdd"]
    assert d.f1_madcluster - d.f1_none == pytest.approx(0.1) and d.paired_gain == pytest.approx(0.1)
    assert d.ci_low == pytest.approx(0.1) and d.ci_high == pytest.approx(0.1) and d.verdict == "gain"
    # paper appendix T2: DeepSVDD .37 → .52, same direction
    assert (d.paper_f1_none, d.paper_f1_madcluster, d.direction_matches) == (0.37, 0.52, "yes")
    l = t.loc["lstm"]
    assert l.paired_gain == 0.0 and l.wilcoxon_p == 1.0 and l.verdict == "no difference shown"
    assert l.paper_f1_none != l.paper_f1_none  # no paper row for lstm


def test_paired_refuses_runs_whose_configs_differ_in_another_key(tmp_path):
    df = t2_results(tmp_path, differ="trainer.epochs=7")
    with pytest.raises(MadbenchError, match=r"no partner whose config differs only in head; the closest differs in "
                                         r"'trainer.epochs'"):
        RP.paired_table(df, "head", "none", "madcluster")


def test_runs_that_differ_only_in_runtime_keys_pair(tmp_path):
    """`trainer.num_threads=1` and `auto` compute the same thing (madbench.keys: runtime): they pair."""
    t = RP.paired_table(t2_results(tmp_path, differ="trainer.num_threads=1"), "head", "none", "madcluster")
    assert t.set_index("backbone").loc["deepsvdd", "mean_gain"] == pytest.approx(0.1)


def test_an_integer_key_pairs_by_its_value_where_other_runs_lack_it(tmp_path):
    """A collected CSV whose head.k column has an empty cell (a head=none run has no k) reads
    back as 1.0 and 2.0; --paired head.k=1,2 still finds both arms."""
    rows = [dict(run_id=rid, status="ok", entity=e, protocol="madcluster", f1=0.5, **{"config.head.k": k,
                                                                                   "config.dataset.window": 100})
            for rid, k in (("k1", 1), ("k2", 2), ("none", None)) for e in ("C-1", "ALL")]
    pd.DataFrame(rows).to_csv(tmp_path / "collected.csv", index=False)
    df = load_results(tmp_path / "collected.csv")
    assert df["config.head.k"].dtype.kind == "f"
    assert RP.pair_runs(df, "head.k", "1", "2") == [("k1", "k2")]


@pytest.mark.slow
def test_paired_cli_writes_the_table(tmp_path):
    df = t2_results(tmp_path)
    df.to_csv(tmp_path / "collected.csv", index=False)
    p = script("madbench-tables", "paired", str(tmp_path / "collected.csv"), "--paired", "head=none,madcluster", "--out", str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    t = pd.read_csv(tmp_path / "out" / "paired.csv").set_index("backbone")
    assert t.loc["deepsvdd", "mean_gain"] == pytest.approx(0.1) and t.loc["lstm", "verdict"] == "no difference shown"
    # mean ranks over the two backbones: madcluster wins deepsvdd, ties lstm → 1.25 vs 1.75
    assert "none 1.75, madcluster 1.25" in p.stdout and (tmp_path / "out" / "paired_cd.png").stat().st_size > 1000


def test_m2ad_tables_say_what_they_need():
    """A sweep without m2ad rows used to end in `AttributeError ... 'ours_f1'`."""
    df = results_frame(rows("msl", "m2ad_table2-msl", COUNTS))
    for name in ("m2ad_table2", "m2ad_ablation"):
        with pytest.raises(MadbenchError, match=r"no ok protocol=m2ad rows in RESULTS; the M2AD tables need runs with "
                                                r"protocol=\[m2ad,\.\.\.\]"):
            table(name, df[df.protocol != "m2ad"])
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
    t = table("m2ad_search", results_frame(parent + same + fwd + none))
    assert t.grouping.tolist() == ["padding", "forward", "none"]
    assert t.steps.tolist()[:2] == [50, 360] and t.steps.isna().tolist() == [False, False, True]
    assert t.sided.tolist() == ["one", "two", "one"]
    pad, fw, no = (t.iloc[i] for i in range(3))
    assert (pad.tp, pad.fp, pad.fn) == (3, 4, 1) and pad.f1 == pytest.approx(6 / (6 + 4 + 1))
    assert pad.f05 == pytest.approx(1.25 * 3 / (1.25 * 3 + 0.25 * 1 + 4))
    assert pad.flagged == pytest.approx((0.5 * 1000 + 0.2 * 3000) / 4000)  # pooled over steps, not (0.5 + 0.2) / 2
    assert (fw.tp, fw.fp, fw.fn) == (4, 1, 0) and fw.flagged == pytest.approx((900 + 300) / 4000)
    assert (no.tp, no.fp, no.fn) == (1, 16, 3) and no.events == 4
    m, _ = MSL_C1_D14
    assert (pad.paper_f1, pad.paper_f05) == (0.749, 0.752)
    assert pad.paper_same_entities_f1 == pytest.approx(m) and pad.delta_f1 == pytest.approx(pad.f1 - m)
    # per iteration (see MSL_C1_D14): tp 4, fn 0, fp 0 0 1 0 0 → means 4, 0.2, 0
    assert (pad.paper_tp, pad.paper_fp, pad.paper_fn) == pytest.approx((4, 0.2, 0))
    shown = render("m2ad_search", t)
    assert shown["padding / bridge"].tolist() == ["50", "360", "—"] and shown.flagged.tolist()[0] == "27.5%"
    assert "alpha" not in shown and "name" not in shown  # the same in every row: not shown


def test_search_needs_each_run_dirs_config(tmp_path):
    rows_ = search_run(tmp_path, "run", {"padding": 50}, {}, {"C-1": (1, 0, 0, 0.1, 100)}, "2026-01-01")
    (tmp_path / "run" / "config.yaml").unlink()
    with pytest.raises(MadbenchError, match="m2ad_search needs the config key protocol.m2ad.grouping: RESULTS has no "
                                            "config.protocol.m2ad.grouping column and its run dirs are not here"):
        table("m2ad_search", results_frame(rows_))


# -- appendix Table 1 (number of clusters) -------------------------------------------------------
def t1_results(tmp_path):
    """Run dirs (config.yaml with head.k) for k = 1, 2, 3 × 2 seeds on MSL and k = 1 on PSM:
    madcluster ALL rows with F1 = 0.5 − 0.05·(k − 1) + 0.02·seed, strict macro beside."""
    import yaml

    out = []
    for ds, ks in (("msl", (1, 2, 3)), ("psm", (1,))):
        for k in ks:
            for seed in (0, 1):
                d = tmp_path / f"{ds}-k{k}-{seed}"
                d.mkdir()
                (d / "config.yaml").write_text(yaml.safe_dump({"head": {"name": "madcluster", "k": k}, "seed": seed}))
                v = 0.5 - 0.05 * (k - 1) + 0.02 * seed
                base = dict(dataset=ds, backbone="dcdetector", head="madcluster", seed=seed, status="ok", entity="ALL",
                            run_dir=str(d), name=f"madcluster_t1-{ds}-dcdetector-k{k}")
                out.append(base | dict(protocol="madcluster", aggregate="mean", f1=v, aff_precision=v + 0.2,
                                       aff_recall=0.9, vus_roc=0.6, vus_pr=0.3, n_entities=27))
                out.append(base | dict(protocol="strict", aggregate="macro", f1=v / 10))
    # a failed run of k = 9 (no config.yaml) must not be read
    out.append(dict(dataset="msl", backbone="dcdetector", head="madcluster", seed=0, status="failed", entity="ALL",
                    protocol="madcluster", run_dir=str(tmp_path / "absent")))
    return results_frame(out)


def test_madcluster_t1_reads_k_from_each_run_and_puts_the_paper_beside(tmp_path):
    t = table("madcluster_t1", t1_results(tmp_path)).set_index(["dataset", "k"])
    assert list(t.index) == [("msl", 1), ("msl", 2), ("msl", 3), ("psm", 1)]
    m3 = t.loc[("msl", 3)]
    assert m3.f1_mean == pytest.approx(0.41) and m3.f1_std == pytest.approx(statistics.stdev([0.40, 0.42]))
    assert m3.aff_precision_mean == pytest.approx(0.61) and m3.strict_f1_mean == pytest.approx(0.041)
    assert m3.seeds == 2 and m3.entities == 27
    # the paper's appendix T1: MSL k = 3 .48 / .71 / .98, k = 1 .52; PSM k = 1 .67
    assert (m3.paper_f1, m3.paper_aff_precision, m3.paper_aff_recall) == (0.48, 0.71, 0.98)
    assert m3.delta_f1_vs_k1 == pytest.approx(-0.10) and m3.paper_delta_f1_vs_k1 == pytest.approx(-0.04)
    assert t.loc[("psm", 1), "paper_f1"] == 0.67 and t.loc[("psm", 1), "delta_f1_vs_k1"] == 0
    shown = render("madcluster_t1", t.reset_index())
    assert shown["F1 ours"].tolist()[2] == f"0.410 ± {statistics.stdev([0.40, 0.42]):.3f}"
    assert shown["ΔF1 paper"].tolist()[2] == "-0.040" and "ΔF1 vs k=1 ours" in shown


def test_madcluster_t1_needs_the_run_dirs(tmp_path):
    df = t1_results(tmp_path)
    with pytest.raises(MadbenchError, match="madcluster_t1 needs the config key head.k: RESULTS has no config.head.k "
                                            "column and its run dirs are not here"):
        table("madcluster_t1", df.drop(columns="run_dir"))


# -- the backbone × head × scoring grid ----------------------------------------------------------
def grid_rows():
    """lstm (raw and m2ad) and deepsvdd (raw only) × none/madcluster × 2 seeds, each protocol's
    aggregate rows (and the ones the grid must not read), and usad's failed run."""
    out = []
    for bb, scorings in (("lstm", ("raw", "m2ad")), ("deepsvdd", ("raw",))):
        for head in ("none", "madcluster"):
            for sc in scorings:
                for seed in (0, 1):
                    v = {"lstm": 0.4, "deepsvdd": 0.2}[bb] + (0.1 if head == "madcluster" else 0) \
                        + (0.05 if sc == "m2ad" else 0) + 0.02 * seed
                    base = dict(dataset="msl", backbone=bb, head=head, scoring=sc, seed=seed, status="ok",
                                entity="ALL", run_id=f"{bb}{head}{sc}{seed}", n_entities=27,
                                finished_at="2026-01-01")
                    out += [base | dict(protocol="strict", aggregate="macro", f1=v, vus_roc=0.7),
                            base | dict(protocol="strict", aggregate="micro", f1=0.99),
                            base | dict(protocol="madcluster", aggregate="mean", f1=v + 0.3, vus_roc=0.6),
                            base | dict(protocol="m2ad", aggregate="sum", event_f1=v + 0.1, f1=0.99,
                                        detected_fraction=0.1 * (seed + 1)),
                            base | dict(protocol="tslib", aggregate="mean", f1=0.99, pa_f1=v + 0.2),
                            base | dict(protocol="strict", aggregate="", entity="C-1", f1=0.99)]
    # an older duplicate of one seed (a re-run): the newest row counts
    out.append(dict(dataset="msl", backbone="lstm", head="none", scoring="raw", seed=0, status="ok", entity="ALL",
                    protocol="strict", aggregate="macro", f1=0.0, run_id="old", finished_at="2025-01-01"))
    out.append(dict(dataset="msl", backbone="usad", head="none", scoring="raw", seed=0, status="failed", entity="ALL",
                    protocol="strict", run_id="u0", error="backbone.model.hidden=100 is wider than the input"))
    return results_frame(out)


def test_grid_one_row_per_backbone_head_scoring_with_each_protocols_f1():
    t = table("grid", grid_rows(), metric=None)
    keys = list(zip(t.backbone, t["head"], t.scoring))
    assert keys == [("deepsvdd", "none", "raw"), ("deepsvdd", "madcluster", "raw"), ("lstm", "none", "raw"),
                    ("lstm", "none", "m2ad"), ("lstm", "madcluster", "raw"), ("lstm", "madcluster", "m2ad"),
                    ("usad", "none", "raw")]
    r = t.set_index(["backbone", "head", "scoring"]).loc[("lstm", "madcluster", "m2ad")]
    # v = 0.4 + 0.1 + 0.05 + 0.02·seed → seeds 0.55, 0.57
    assert r.strict_f1 == pytest.approx(0.56) and r.strict_f1_std == pytest.approx(statistics.stdev([0.55, 0.57]))
    assert r.madcluster_f1 == pytest.approx(0.86) and r.m2ad_f1 == pytest.approx(0.66)
    assert r.tslib_f1 == pytest.approx(0.76) and r.m2ad_flagged == pytest.approx(0.15) and r.seeds == 2
    assert t.set_index(["backbone", "head", "scoring"]).loc[("lstm", "none", "raw"), "strict_f1"] == pytest.approx(0.41)
    u = t[t.backbone == "usad"].iloc[0]
    assert u.failed_runs == 1 and "wider" in u.error and u.seeds == 0 and u.strict_f1 != u.strict_f1
    shown = render("grid", t)
    assert list(shown.columns)[5:9] == ["strict F1 (macro)", "madcluster best F1 (mean)", "m2ad event F1",
                                        "tslib PA-F1 (mean)"]
    assert shown["failed"].tolist()[-1].startswith("1: backbone.model.hidden")
    # --metric: one column under every protocol (m2ad's aggregate row has none: empty)
    v = table("grid", grid_rows(), metric="vus_roc").set_index(["backbone", "head", "scoring"]).loc[("lstm", "none", "raw")]
    assert (v.strict_vus_roc, v.madcluster_vus_roc) == pytest.approx((0.7, 0.6)) and v.m2ad_vus_roc != v.m2ad_vus_roc
    assert "vus_roc" in " ".join(render("grid", table("grid", grid_rows(), metric="vus_roc")).columns)


@pytest.mark.slow
def test_grid_cli_writes_the_table(tmp_path):
    grid_rows().to_csv(tmp_path / "collected.csv", index=False)
    p = script("madbench-tables", "grid", str(tmp_path / "collected.csv"), "--out", str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    assert len(pd.read_csv(tmp_path / "out" / "grid.csv")) == 7
    assert "m2ad event F1" in (tmp_path / "out" / "grid.md").read_text()


# -- paired statistics on the grid, the refusal as a user sees it, traces ----------------------------
def paired_grid_results(tmp_path):
    """Minimal run dirs (config.yaml: backbone, head, scoring, seed) for lstm × {raw, m2ad} ×
    {none, madcluster} × 2 seeds × 3 entities: the head adds +0.1 under raw and nothing under
    m2ad; scores.npz for the traces."""
    import yaml

    from madbench import rundir
    from madbench.scoring.base import SeriesScores

    base = {"C-1": 0.3, "D-14": 0.5, "M-6": 0.2, "T-8": 0.4, "P-15": 0.25, "S-2": 0.35}
    labels = np.zeros(50, dtype=np.int8)
    labels[20:25] = 1
    rows = []
    for sc in ("raw", "m2ad"):
        for head in ("none", "madcluster"):
            for seed in (0, 1):
                d = tmp_path / f"{sc}-{head}-{seed}"
                d.mkdir()
                (d / "config.yaml").write_text(yaml.safe_dump({"backbone": {"name": "lstm"}, "head": {"name": head},
                                                               "scoring": {"name": sc}, "seed": seed}))
                rid = f"{sc}{head}{seed}"
                gain = 0.1 if (head == "madcluster" and sc == "raw") else 0.0
                stored = []
                for e, v in base.items():
                    rows.append(dict(run_id=rid, run_dir=str(d), dataset="msl", backbone="lstm", head=head, scoring=sc,
                                     seed=seed, status="ok", entity=e, protocol="madcluster", f1=v + gain))
                    rows.append(dict(run_id=rid, run_dir=str(d), dataset="msl", backbone="lstm", head=head, scoring=sc,
                                     seed=seed, status="ok", entity=e, protocol="strict", f1=v,
                                     threshold=2.0 if head == "none" else 20.0))
                    score = np.linspace(0, 1, 50) * (10 if head == "madcluster" else 1)
                    series = SeriesScores(step=score, residuals=None, window=score[:40], window_start=np.arange(40))
                    stored.append(rundir.StoredEntity(
                        name=e, labels=labels if e != "C-1" else np.zeros(50, np.int8), sensors=["s0"],
                        val_mask=np.ones(50, bool), train=series, test=series, score=score, train_score=score))
                rundir.write_scores(d, rundir.StoredScores(entities=stored, window=10))
    return results_frame(rows)


def test_paired_by_several_columns_keeps_the_grids_scorings_apart(tmp_path):
    df = paired_grid_results(tmp_path)
    t = RP.paired_table(df, "head", "none", "madcluster", "backbone,scoring").set_index(["backbone", "scoring"])
    assert t.loc[("lstm", "raw"), "mean_gain"] == pytest.approx(0.1) and t.loc[("lstm", "raw"), "verdict"] == "gain"
    # identical arms: p = 1, a CI at 0
    m = t.loc[("lstm", "m2ad")]
    assert m.mean_gain == 0 and m.wilcoxon_p == 1.0 and m.ci_low == 0 == m.ci_high and m.verdict == "no difference shown"
    with pytest.raises(MadbenchError, match="--by machine: not a result column"):
        RP.paired_table(df, "head", "none", "madcluster", "backbone,machine")


@pytest.mark.slow
def test_paired_cli_refuses_a_config_difference_in_one_line_naming_the_key(tmp_path):
    df = t2_results(tmp_path, differ="trainer.epochs=7")
    df.to_csv(tmp_path / "collected.csv", index=False)
    p = script("madbench-tables", "paired", str(tmp_path / "collected.csv"), "--paired", "head=none,madcluster")
    assert p.returncode != 0 and p.stderr.count("\n") == 1
    assert p.stderr.startswith("madbench-tables: error: --paired head=none,madcluster: run ")
    assert "the closest differs in 'trainer.epochs'" in p.stderr
    assert not (tmp_path / "paired.csv").exists()  # nothing half-written


class _Images:
    def __init__(self):
        self.logged = []

    def log_image(self, name, path):
        self.logged.append((name, path))


def test_traces_plot_each_pair_with_its_thresholds_and_log_them(tmp_path):
    df = paired_grid_results(tmp_path)
    lg = _Images()
    t = RP.traces(df, "head", "none", "madcluster", tmp_path / "out", by="backbone,scoring", loggers=[lg])
    assert sorted(zip(t.scoring, t.seed, t.entity)) == [("m2ad", 0, "D-14"), ("raw", 0, "D-14")]  # C-1 has no event
    assert (t.threshold_none == 2.0).all() and (t.threshold_madcluster == 20.0).all()
    assert [n for n, _ in lg.logged] == [f"traces/{Path(p).stem}" for p in t.png]
    assert all(Path(p).stat().st_size > 5000 for p in t.png) and Path(t.png[0]).parent == tmp_path / "out" / "traces"
    one = RP.traces(df, "head", "none", "madcluster", tmp_path / "o2", by="backbone,scoring", entity="C-1", seed=1)
    assert (one.seed == 1).all() and (one.entity == "C-1").all()
    with pytest.raises(MadbenchError, match="traces --entity X-9: not scored in both runs"):
        RP.traces(df, "head", "none", "madcluster", tmp_path / "o3", by="backbone,scoring", entity="X-9")
    with pytest.raises(MadbenchError, match="traces --protocol madcluster: its threshold is not on the step score"):
        RP.traces(df, "head", "none", "madcluster", tmp_path / "o4", protocol="madcluster")


def test_grid_job_end_to_end_scores_raw_and_rescores_m2ad_from_the_same_model(tmp_path):
    """experiment=grid on tiny synthetic data: one lstm job gives the raw arm under the four
    protocols and its m2ad arm re-scored from the kept residuals; a deepsvdd job (no
    residuals) is scored raw only and nothing fails. Under protocol=madcluster the window
    score does not depend on scoring, so the two arms' rows are equal there."""
    from madbench import run
    from tests.conftest import compose_cfg

    for backbone in ("lstm", "deepsvdd"):
        cfg = compose_cfg(["experiment=grid", "dataset=synthetic", f"backbone={backbone}", "trainer.epochs=1",
                           "logger.csv.plots=false"])
        run.main(cfg, tmp_path / "sweep" / backbone)
    assert not (tmp_path / "sweep" / "deepsvdd" / "rescored").exists()
    t = table("grid", load_results(tmp_path / "sweep"), metric=None)
    assert list(zip(t.backbone, t.scoring)) == [("deepsvdd", "raw"), ("lstm", "raw"), ("lstm", "m2ad")]
    assert (t.failed_runs == 0).all() and t[[f"{p}_f1" for p in reports.grid.GRID_METRICS]].notna().all().all()
    lstm = t[t.backbone == "lstm"].set_index("scoring")
    assert lstm.loc["raw", "madcluster_f1"] == lstm.loc["m2ad", "madcluster_f1"]
    assert lstm.loc["raw", "strict_f1"] != lstm.loc["m2ad", "strict_f1"]


@pytest.mark.slow
def test_paired_cli_on_results_without_the_protocol_names_those_it_has(tmp_path):
    """`--paired head=none,madcluster` reads the madcluster protocol by default; on a sweep
    scored under strict and tslib only it used to say no more than that it found no rows."""
    df = t2_results(tmp_path)
    df = pd.concat([df.assign(protocol="strict"), df.assign(protocol="tslib")])
    df.to_csv(tmp_path / "collected.csv", index=False)
    p = script("madbench-tables", "paired", str(tmp_path / "collected.csv"), "--paired", "head=none,madcluster", "--out", str(tmp_path / "out"))
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip() == ("madbench-tables: error: no per-entity rows of protocol madcluster in RESULTS (it has "
                                "strict, tslib); choose one with --protocol strict")
    assert not (tmp_path / "out").exists()
    ok = script("madbench-tables", "paired", str(tmp_path / "collected.csv"), "--paired", "head=none,madcluster", "--protocol", "strict", "--out", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr  # the suggestion works


def test_every_table_has_a_help_page():
    """`madbench-tables --help` crashed in argparse on the attribution table's help, which
    holds a % (argparse %-formats help strings)."""
    top = script("madbench-tables", "--help")
    assert top.returncode == 0 and not top.stderr, top.stderr
    for table in reports.REPORTS:
        p = script("madbench-tables", table, "--help")
        assert p.returncode == 0 and p.stdout.startswith(f"usage: madbench-tables {table}") and not p.stderr, table
