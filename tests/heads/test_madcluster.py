"""MADCluster's loss terms against the equations of METHODS.md (transcribed below, in the
appendix's own form, independently of the implementation), the signs the appendix proves,
the bounds on ν, the k > 1 variant, and the head inside real jobs."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from madbench import run
from madbench.errors import ConfigError, TrainingError
from madbench.heads.madcluster import (MADClusterHead, cluster_loss, cosine_assignment, dec_target, kl_cluster_loss,
                                       mapping_loss, student_t_assignment, threshold_target)
from tests.conftest import compose_cfg, stored

F64 = torch.float64


def reference_cluster_loss(q: float, p: float, nu: float, eps: float = 0.01) -> float:
    """METHODS.md step 3, written as the appendix writes f1 (eq. 6, the (q − 1) form),
    with the reference's clamps: q, p >= 1e-6, log arguments <= 1e6."""
    q, p = max(q, 1e-6), max(p, 1e-6)
    ps = p * (1 - eps) + (1 - p) * eps
    f1 = (1 - nu ** (1 - nu)) / (1 - nu) * (q - 1) + 1
    f2 = q ** (1 - nu)
    return p * math.log(p / q) - ps * math.log(min(f1, 1e6)) - (1 - ps) * math.log(min(f2, 1e6))


@pytest.mark.parametrize("q,p,nu", [(0.3, 1.0, 0.5), (0.9, 1.0, 0.2), (0.05, 0.0, 0.7), (0.6, 0.0, 0.5),
                                    (0.0, 1.0, 0.5), (1.0, 1.0, 0.99), (0.42, 0.3, 0.1)])
def test_cluster_loss_matches_the_equations(q, p, nu):
    got = cluster_loss(torch.tensor([[[q]]], dtype=F64), torch.tensor([[[p]]], dtype=F64), torch.tensor(nu, dtype=F64))
    assert got.item() == pytest.approx(reference_cluster_loss(q, p, nu), rel=1e-10, abs=1e-12)


def test_cluster_loss_by_hand():
    # q = 0.5, p = 1, ν = 0.5: ν^{1−ν} = √0.5; f1 = (1 − √0.5)/0.5·(0.5 − 1) + 1 = √0.5; f2 = √0.5
    # L = log(1/0.5) − 0.99·log √0.5 − 0.01·log √0.5 = log 2 + 0.5·log 2 = 1.5 log 2
    got = cluster_loss(torch.tensor([[[0.5]]], dtype=F64), torch.tensor([[[1.0]]], dtype=F64), torch.tensor(0.5, dtype=F64))
    assert got.item() == pytest.approx(1.5 * math.log(2), rel=1e-12)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_loss_decreases_in_q_and_in_nu(p):
    """The appendix proves ∂L/∂q < 0 and ∂L/∂ν < 0 on (0, 1)²; checked by autograd on a grid."""
    grid = torch.linspace(0.02, 0.98, 25, dtype=F64)
    q, nu = torch.meshgrid(grid, grid, indexing="ij")
    q, nu = q.clone().requires_grad_(True), nu.clone().requires_grad_(True)
    loss = cluster_loss(q, torch.full_like(q, p), nu)
    gq, gnu = torch.autograd.grad(loss.sum(), (q, nu))
    assert (gq < 0).all() and (gnu < 0).all()


def test_dec_target_is_one_for_a_single_cluster_and_a_distribution_for_several():
    q = torch.rand(4, 7, 1)
    assert torch.equal(dec_target(q), torch.ones_like(q))
    qk = student_t_assignment(torch.randn(4, 7, 3), torch.randn(5, 3))
    torch.testing.assert_close(qk.sum(-1), torch.ones(4, 7))
    p = dec_target(qk, dims=(1,))
    torch.testing.assert_close(p.sum(-1), torch.ones(4, 7))
    # by hand: p_tj ∝ q_tj² / Σ_t q_tj
    w = qk ** 2 / qk.sum(1, keepdim=True)
    torch.testing.assert_close(p, w / w.sum(-1, keepdim=True))


def test_threshold_target_and_cosine_assignment():
    q = torch.tensor([[[0.2], [0.5], [0.9]]])
    assert threshold_target(q, torch.tensor(0.5)).flatten().tolist() == [0.0, 1.0, 1.0]
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    c = torch.tensor([[1.0, 0.0]])
    # cos = 1, 0, −1 → q = 1, 0.5, 0
    torch.testing.assert_close(cosine_assignment(h, c).flatten(), torch.tensor([1.0, 0.5, 0.0]))


@pytest.mark.parametrize("k", [1, 3])
def test_assignment_and_distance_equal_the_library_forms(k):
    h, c = torch.randn(4, 6, 5, dtype=F64), torch.randn(k, 5, dtype=F64)
    ref = (torch.nn.functional.cosine_similarity(h.unsqueeze(2), c[None, None], dim=-1) + 1) / 2
    torch.testing.assert_close(cosine_assignment(h, c), ref)
    from madbench.heads.madcluster import squared_distance

    torch.testing.assert_close(squared_distance(h, c), torch.cdist(h, c.expand(4, k, 5)) ** 2)


def test_an_all_zero_embedding_row_gives_finite_gradients():
    """An all-zero row (ReLU or GRU outputs can be exactly 0) has norm 0: its cosine is 0 and
    every gradient stays finite, as with F.cosine_similarity (the square root's infinite
    slope at 0 once turned the whole model into NaN after one step on OmniAnomaly)."""
    h = torch.randn(2, 3, 4, dtype=F64)
    h[0, 1] = 0.0
    h.requires_grad_(True)
    c = torch.randn(1, 4, dtype=F64, requires_grad=True)
    q = cosine_assignment(h, c)
    assert q[0, 1, 0] == 0.5
    q.sum().backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(c.grad).all()
    h2, c2 = h.detach().clone().requires_grad_(True), c.detach().clone().requires_grad_(True)
    ((torch.nn.functional.cosine_similarity(h2.unsqueeze(2), c2[None, None], dim=-1) + 1) / 2).sum().backward()
    torch.testing.assert_close(h.grad, h2.grad)
    torch.testing.assert_close(c.grad, c2.grad)


def test_mapping_loss_one_class_and_soft_boundary_by_hand():
    h = torch.tensor([[[1.0, 2.0], [3.0, 0.0]]])
    c = torch.tensor([[1.0, 0.0]])
    dist, loss = mapping_loss(h, c, torch.zeros(1), "one-class")
    assert dist.flatten().tolist() == [4.0, 4.0] and torch.equal(loss, dist)
    # soft-boundary, R = 1.5, ν = 0.1: R² + max(0, d − R²)/ν = 2.25 + 1.75/0.1 = 19.75
    _, loss = mapping_loss(h, c, torch.tensor([1.5]), "soft-boundary", 0.1)
    assert loss.flatten().tolist() == pytest.approx([19.75, 19.75])
    _, inside = mapping_loss(h, c, torch.tensor([3.0]), "soft-boundary", 0.1)
    assert inside.flatten().tolist() == pytest.approx([9.0, 9.0])  # inside the sphere: R² only


def test_k_greater_than_one_loss_and_score():
    head = MADClusterHead(k=3)
    h = torch.randn(2, 5, 4)
    head.ensure_centre(4)
    t = head.terms(h)
    torch.testing.assert_close(t["cluster"], kl_cluster_loss(t["q"], t["p"]))
    assert not head.learns_nu and not head.nu.requires_grad
    out = type("Out", (), {"embedding": h})()
    score = head.score_factor(out)
    nearest = t["dist"].gather(-1, t["q"].argmax(-1, keepdim=True)).squeeze(-1)
    torch.testing.assert_close(score, (t["cluster"].sum(-1) + nearest).mean(1))


@pytest.mark.parametrize("kwargs, names, head_is", [
    ({}, ("head", "d", "f", "df"), "f"),                                  # MADCluster: the reference's factor f
    ({"mapping": "one-class"}, ("head", "d", "f", "df"), "f"),
    ({"mapping": "none"}, ("head", "f"), "f"),                            # clustering only: no distance
    ({"clustering": False}, ("head", "d"), "d"),                          # distance only: no cluster score
])
def test_score_factors_d_f_and_df_by_hand(kwargs, names, head_is):
    """d = mean_t ‖h_t − c‖², f = mean_t L_cluster(q_t, p = 1, ν) (k = 1, DEC target), df = d·f:
    from the equations, on a fixed centre, independently of ``terms``."""
    head = MADClusterHead(**kwargs)
    assert head.score_names() == names
    h = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], [[-1.0, 0.5], [2.0, 2.0], [0.5, -1.0]]], dtype=F64)
    head.double()
    head.ensure_centre(2)
    with torch.no_grad():
        head.centre.copy_(torch.tensor([[1.0, 1.0]], dtype=F64))
    c = np.array([1.0, 1.0])
    nu = 0.5
    d, f = [], []
    for window in h.numpy():
        d.append(np.mean([((v - c) ** 2).sum() for v in window]))
        qs = [(v @ c / (np.linalg.norm(v) * np.linalg.norm(c)) + 1) / 2 for v in window]
        f.append(np.mean([reference_cluster_loss(q, 1.0, nu) for q in qs]))
    with torch.no_grad():
        parts = head.score_factors(type("Out", (), {"embedding": h})())
    assert tuple(sorted(parts)) == tuple(sorted(names))
    expected = {"d": np.array(d), "f": np.array(f)}
    expected["df"] = expected["d"] * expected["f"]
    for name in names:
        if name != "head":
            np.testing.assert_allclose(parts[name].numpy(), expected[name], rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(parts["head"].numpy(), expected[head_is], rtol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(head.score_factor(type("Out", (), {"embedding": h})()), parts["head"])


def test_nu_stays_inside_and_the_loss_finite_under_extreme_q():
    head = MADClusterHead(nu=0.5)
    for raw in (-3.0, 0.0, 1.0, 7.0):
        with torch.no_grad():
            head.nu.fill_(raw)
        nu = head.threshold()
        assert 0 < nu.item() < 1
        for q in (0.0, 1e-12, 1.0):
            loss = cluster_loss(torch.full((1, 1, 1), q), torch.ones(1, 1, 1), nu)
            assert torch.isfinite(loss).all(), (raw, q)


@pytest.mark.parametrize("kwargs,key", [({"k": 0}, "head.k"), ({"nu": 0.0}, "head.nu"), ({"nu": 1.0}, "head.nu"),
                                        ({"nu_svdd": 0.0}, "head.nu_svdd"), ({"target": "x"}, "head.target"),
                                        ({"mapping": "x"}, "head.mapping")])
def test_bad_parameters_are_one_line_errors_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as e:
        MADClusterHead(**kwargs)
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


@pytest.mark.parametrize("override,key", [("head.k=0", "head.k"), ("head.nu=1.5", "head.nu"),
                                          ("head.nu_svdd=-1", "head.nu_svdd")])
def test_bad_head_values_are_refused_at_compose_time(override, key):
    from madbench.checks import validate

    with pytest.raises(ConfigError, match=f"^{key}"):
        validate(compose_cfg(["head=madcluster", override]))


def test_a_head_on_an_embedding_without_time_axis_is_refused():
    head = MADClusterHead()
    with pytest.raises(ConfigError, match="head=madcluster needs a per-step embedding .* no time axis"):
        head.terms(torch.randn(4, 8))


# -- inside jobs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def head_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("mc") / "run"
    cfg = compose_cfg(["head=madcluster", "dataset.n_systems=1", "trainer.epochs=3", "trainer.patience=null",
                       "protocol=[strict,madcluster]"])
    return cfg, d, run.main(cfg, d)


def test_nu_r_and_the_loss_parts_are_logged_per_epoch(head_run):
    cfg, d, df = head_run
    log = pd.read_csv(d / "train_log.csv")
    for col in ("madcluster_nu", "madcluster_R", "train_madcluster_map", "train_madcluster_cluster",
                "val_madcluster_cluster", "train_objective_loss", "lr_model", "lr_madcluster_nu"):
        assert col in log.columns and log[col].notna().all(), col
    # ν rises (∂L/∂ν < 0) and stays inside (0, 1); R is set after each epoch
    assert (log.madcluster_nu.diff().dropna() > 0).all() and log.madcluster_nu.between(0, 1).all()
    assert (log.madcluster_R > 0).all()
    # the model optimiser decays 0.9 per epoch; ν's does not
    np.testing.assert_allclose(log.lr_model, 1e-3 * 0.9 ** np.arange(3), rtol=1e-9)
    np.testing.assert_allclose(log.lr_madcluster_nu, 1e-4, rtol=1e-9)
    assert (df.status == "ok").all()


def test_score_is_the_backbone_score_times_the_head_factor(head_run):
    cfg, d, df = head_run
    e = stored(d)["sys0"]
    step, res, factor = e.test.step, e.test.residuals, e.test.factor
    ok = np.isfinite(step)
    # a forecast scores one step per window: step = mean(residual²) × the window's factor
    np.testing.assert_allclose(step[ok], (res[ok] ** 2).mean(1) * factor[ok], rtol=1e-5)
    assert np.isfinite(factor[ok]).all() and (factor[ok] > 0).all()


def test_madcluster_and_m2ad_together(tmp_path):
    """The head shapes training, M2AD scores the per-sensor residuals, the head's factor is
    kept in scores.npz on its own."""
    cfg = compose_cfg(["head=madcluster", "scoring=m2ad", "dataset.n_systems=1", "trainer.epochs=1",
                       "protocol=[strict,m2ad]"])
    df = run.main(cfg, tmp_path)
    assert (df.status == "ok").all() and set(df["head"]) == {"madcluster"} and set(df.scoring) == {"m2ad"}
    e = stored(tmp_path)["sys0"]
    assert e.test.factor is not None and e.p is not None and e.sensor_p is not None
    # the final score is M2AD's Fisher statistic of the residuals, not the head-scaled step
    ok = np.isfinite(e.score)
    assert not np.allclose(e.score[ok], e.test.step[ok])


def test_reference_quirks_let_nu_leave_and_the_run_fails_saying_so(tmp_path):
    # a huge ν learning rate pushes ν past 1 within a few batches; unbounded (the reference),
    # the cluster loss turns negative enough that log(mean Σ …) is NaN
    small = ["dataset.n_systems=1", "dataset.train_len=200", "dataset.test_len=100", "trainer.epochs=2",
             "trainer.batch_size=16", "logger.csv.plots=false"]
    cfg = compose_cfg(["head=madcluster", "head.reference_quirks=true", "head.nu_lr=0.5", "head.mapping=none", *small])
    with pytest.raises(TrainingError, match=r"ν=.* left \(0, 1\) under head.reference_quirks=true"):
        run.main(cfg, tmp_path / "quirk")
    res = pd.read_csv(tmp_path / "quirk" / "results.csv")
    assert (res.status == "failed").all() and res.error.str.contains("left (0, 1)", regex=False).all()
    # the corrected default keeps ν inside and trains
    ok = run.main(compose_cfg(["head=madcluster", "head.nu_lr=0.5", "head.mapping=none", *small]), tmp_path / "fixed")
    assert (ok.status == "ok").all()
    assert pd.read_csv(tmp_path / "fixed" / "train_log.csv").madcluster_nu.between(0, 1).all()
