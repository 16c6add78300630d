"""The training contract (ARCHITECTURE.md): one Trainer that names no method carries every
training-loop shape of BACKBONES.md's last section through the Detector's hooks.

Test objectives below exercise the shapes no real backbone of their own exercises yet:
two optimisers stepped alternately with fresh forwards, two backward passes then one step,
and state set before epoch 1. SGD with a known learning rate makes every update checkable
by hand."""
import numpy as np
import pytest
import torch
from torch import nn

from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.heads.base import Head
from madbench.models.base import BackboneOutput
from madbench.objectives.base import Objective

LR = 0.1


def sgd(params):
    return torch.optim.SGD(params, lr=LR)


class TwoBranch(nn.Module):
    """Two scalar branches a and b: reconstruction = a·x and a second output b·x."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.0))
        self.b = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return BackboneOutput(embedding=x * self.a, reconstruction=x * self.a, extras={"second": x * self.b})


def windows(T=40, D=2, L=4, seed=0):
    x = np.random.default_rng(seed).normal(size=(T, D)).astype(np.float32)
    return Windows(x, WindowSpec(window=L))


def trainer(**kw):
    kw = {"epochs": 1, "batch_size": 1000, "patience": None, "device": "cpu", "progress": False,
          "optimizer": sgd} | kw
    return Trainer(**kw)


def fit(detector, w=None, **kw):
    w = w or windows()
    return trainer(**kw).fit(detector, w, np.arange(2), np.arange(2))


class Alternating(Objective):
    """USAD/BeatGAN shape: optimiser 'a' steps on loss_a, then a fresh forward and
    optimiser 'b' steps on loss_b; all gradients zeroed before each backward."""

    calls: list

    def __init__(self):
        super().__init__()
        self.calls = []

    def loss(self, batch, out, ctx=None):
        return {"loss": (out.reconstruction ** 2).mean() + (out.extras["second"] ** 2).mean()}

    def score(self, batch, out):
        return (out.reconstruction ** 2).mean(-1), None

    def configure_optimizers(self, detector, make):
        return {"a": make([detector.backbone.a]), "b": make([detector.backbone.b])}

    def training_step(self, detector, batch, ctx):
        out = detector(batch["x"])
        la = (out.reconstruction ** 2).mean() + (out.extras["second"] ** 2).mean()
        ctx.zero_grad()
        ctx.backward(la)
        self.calls.append(("a", detector.backbone.a.item(), detector.backbone.b.item()))
        ctx.step("a")
        out = detector(batch["x"])  # fresh forward after the first step
        lb = (out.reconstruction ** 2).mean() + (out.extras["second"] ** 2).mean()
        ctx.zero_grad()
        ctx.backward(lb)
        self.calls.append(("b", detector.backbone.a.item(), detector.backbone.b.item()))
        ctx.step("b")
        return {"loss": lb.detach(), "la": la.detach()}


def test_two_optimisers_stepped_alternately_with_fresh_forwards():
    w = windows()
    x = w.inputs(np.arange(len(w)))  # one batch holds every training window
    tr_idx, _ = w.split(0.2)
    m2 = float((x[tr_idx] ** 2).mean())
    obj = Alternating()
    det = Detector(TwoBranch(), obj)
    fit(det, w)
    # phase a: d/da mean((a x)²) = 2a·m2 → a = 1 − LR·2·m2; b untouched
    a1 = 1 - LR * 2 * m2
    assert obj.calls[0] == ("a", 1.0, 1.0)
    assert obj.calls[1][0] == "b" and obj.calls[1][1] == pytest.approx(a1, rel=1e-6) and obj.calls[1][2] == 1.0
    # phase b (fresh forward): only b moves, a stays where phase a left it
    assert det.backbone.a.item() == pytest.approx(a1, rel=1e-6)
    assert det.backbone.b.item() == pytest.approx(1 - LR * 2 * m2, rel=1e-6)


class TwoBackward(Objective):
    """Anomaly Transformer shape: loss1.backward(retain_graph), loss2.backward(), one step."""

    def loss(self, batch, out, ctx=None):
        return (out.reconstruction ** 2).mean()

    def score(self, batch, out):
        return (out.reconstruction ** 2).mean(-1), None

    def training_step(self, detector, batch, ctx):
        out = detector(batch["x"])
        l1 = (out.reconstruction ** 2).mean()
        l2 = 3 * out.reconstruction.mean()
        ctx.zero_grad()
        ctx.backward(l1, retain_graph=True)
        ctx.backward(l2)
        ctx.step()
        return {"loss": (l1 + l2).detach()}


def test_two_backward_passes_then_one_step_sum_the_gradients():
    w = windows()
    tr_idx, _ = w.split(0.2)
    x = w.inputs(tr_idx)
    det = Detector(TwoBranch(), TwoBackward())
    fit(det, w)
    g = 2 * float((x ** 2).mean()) + 3 * float(x.mean())  # d/da of both losses at a = 1
    assert det.backbone.a.item() == pytest.approx(1 - LR * g, rel=1e-5)
    assert det.backbone.b.item() == 1.0  # b is in no loss: its gradient is None, SGD leaves it


class StateFirst(Objective):
    """Deep SVDD/THOC shape: a buffer set from one pass over train before epoch 1."""

    def __init__(self):
        super().__init__()
        self.register_buffer("centre", None)
        self.seen_at_first_step = None

    @torch.no_grad()
    def on_fit_start(self, detector, ctx):
        outs = [out.reconstruction.mean((0, 1)) * len(out.reconstruction) for _, out in ctx.outputs("train")]
        self.centre = torch.stack(outs).sum(0) / len(ctx.train_idx)

    def loss(self, batch, out, ctx=None):
        return ((out.reconstruction - self.centre) ** 2).mean()

    def score(self, batch, out):
        return ((out.reconstruction - self.centre) ** 2).mean(-1), None

    def training_step(self, detector, batch, ctx):
        if self.seen_at_first_step is None:
            self.seen_at_first_step = self.centre.clone()
        return super().training_step(detector, batch, ctx)


def test_state_is_set_from_one_pass_over_train_before_epoch_1():
    w = windows()
    tr_idx, _ = w.split(0.2)
    obj = StateFirst()
    fit(Detector(TwoBranch(), obj), w, epochs=1)
    expected = w.inputs(tr_idx).mean((0, 1))  # a = 1 before training: reconstruction = x
    torch.testing.assert_close(obj.seen_at_first_step, expected)


class Counter(Objective):
    """A buffer that records the epoch, and a validation loss that is best at epoch 2."""

    VAL = {1: 3.0, 2: 1.0, 3: 2.0, 4: 5.0}

    def __init__(self):
        super().__init__()
        self.register_buffer("epoch_seen", torch.zeros(()))

    def loss(self, batch, out, ctx=None):
        return (out.reconstruction ** 2).mean()

    def score(self, batch, out):
        return (out.reconstruction ** 2).mean(-1), None

    def validation_step(self, detector, batch, ctx):
        return {"loss": torch.tensor(self.VAL[ctx.epoch]), "part": torch.tensor(float(ctx.epoch))}

    def on_epoch_end(self, detector, ctx):
        self.epoch_seen.fill_(ctx.epoch)
        ctx.log("seen", self.epoch_seen)


class Scalar(Head):
    """A head with one parameter on its own optimiser and one on the objective's."""

    name = "scalar"

    def __init__(self):
        super().__init__()
        self.own = nn.Parameter(torch.tensor(1.0))
        self.shared = nn.Parameter(torch.tensor(1.0))

    def loss(self, out, ctx=None):
        return {"loss": (self.own * self.shared) ** 2, "own": self.own.detach()}

    def configure_optimizers(self, detector):
        return {"own": torch.optim.SGD([self.own], lr=0.0)}

    def score_factor(self, out):
        return torch.full((len(out.embedding),), 2.0)


def test_early_stopping_restores_the_whole_detector_at_the_best_epoch():
    obj, head = Counter(), Scalar()
    det = Detector(TwoBranch(), obj, [head])
    hist = fit(det, epochs=4, patience=2)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4] and hist[1]["val_loss"] == 1.0
    # the objective's buffer and the head's parameters come back from epoch 2's state
    assert obj.epoch_seen.item() == 2.0
    assert [h["seen"] for h in hist] == [1.0, 2.0, 3.0, 4.0]
    assert [h["val_part"] for h in hist] == [1.0, 2.0, 3.0, 4.0]
    # the head's loss parts are logged under its name; its own optimiser (lr 0) keeps `own`
    assert "train_scalar_own" in hist[0] and "train_objective_loss" in hist[0]
    assert head.own.item() == 1.0 and head.shared.item() != 1.0


def test_min_delta_ignores_small_improvements():
    class Slow(Counter):
        VAL = {1: 1.0, 2: 0.99, 3: 0.98, 4: 0.97}

    hist = fit(Detector(TwoBranch(), Slow()), epochs=4, patience=2, min_delta=0.05)
    assert len(hist) == 3  # epochs 2 and 3 improve by less than 0.05: stale twice → stop


def test_head_parameters_split_between_its_own_and_the_objective_optimiser():
    det = Detector(TwoBranch(), Counter(), [Scalar()])
    opts, scheds = det.configure_optimizers(sgd, lr_decay=0.5)
    assert set(opts) == {"model", "scalar_own"}
    model_params = {id(p) for g in opts["model"].param_groups for p in g["params"]}
    assert id(det.heads[0].own) not in model_params and id(det.heads[0].shared) in model_params
    assert [id(p) for p in det.head_parameters()] == [id(det.heads[0].shared)]
    # trainer.lr_decay schedules the objective's optimiser only
    assert set(scheds) == {"model"}
    opts["model"].step()
    scheds["model"].step()
    assert opts["model"].param_groups[0]["lr"] == pytest.approx(LR * 0.5)


def test_score_factor_multiplies_the_step_score_and_is_placed_on_its_own():
    w = windows(T=12, L=4)
    det = Detector(TwoBranch(), Counter(), [Scalar()])
    (plain,) = trainer(epochs=0).score(Detector(TwoBranch(), Counter()), w, np.arange(2), np.arange(2))
    (out,) = trainer(epochs=0).score(det, w, np.arange(2), np.arange(2))
    np.testing.assert_allclose(out.step, 2 * plain.step, rtol=1e-6)
    np.testing.assert_allclose(out.factor, 2.0)
    assert plain.factor is None and set(plain.components) == {"backbone"} and plain.score_mode == "backbone"


class PerWindow(Head):
    """A head whose factor differs between windows (the mean |x| of the window) and a named
    part beside it (its square)."""

    name = "perwindow"

    def __init__(self, score="product"):
        super().__init__()
        self.score = score

    def loss(self, out, ctx=None):
        return out.embedding.sum() * 0

    def score_names(self):
        return ("head", "sq")

    def score_factors(self, out):
        f = out.embedding.abs().mean(dim=(1, 2))
        return {"head": f, "sq": f ** 2}


class Centred(Counter):
    """A step score that depends on the window, not only on the step: the squared distance
    of the step from its window's mean."""

    def score(self, batch, out):
        r = out.reconstruction
        return ((r - r.mean(1, keepdim=True)) ** 2).mean(-1), None


def test_every_score_part_is_placed_on_its_own_and_the_final_score_is_chosen_from_them():
    T, L = 14, 4
    w = windows(T=T, L=L)
    det = Detector(TwoBranch(), Centred(), [PerWindow()])
    (s,) = trainer(epochs=0).score(det, w, np.arange(2), np.arange(2))
    assert set(s.components) == set(s.window_components) == {"backbone", "head", "product", "sq"}
    # by hand: window i (steps i..i+L-1) has step scores b[i, k] = mean_d (x[i+k, d] − m_i,d)² and factor f[i]
    x = w.base.numpy().astype(np.float64)
    n = T - L + 1
    b = np.array([[((x[i + k] - x[i:i + L].mean(0)) ** 2).mean() for k in range(L)] for i in range(n)])
    f = np.array([np.abs(x[i:i + L]).mean() for i in range(n)])

    def placed(v):  # v [n, L] → the mean over the windows covering each step
        acc, cnt = np.zeros(T), np.zeros(T)
        for i in range(n):
            acc[i:i + L] += v[i]
            cnt[i:i + L] += 1
        return acc / cnt

    ones = np.ones(L)
    expected = {"backbone": b, "head": np.outer(f, ones), "product": b * f[:, None], "sq": np.outer(f ** 2, ones)}
    for name, v in expected.items():
        np.testing.assert_allclose(s.components[name], placed(v), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(s.window_components[name], v.mean(1), rtol=1e-5, err_msg=name)
    # the product is placed as a product: not the product of the placed parts
    assert np.abs(s.components["product"] - s.components["backbone"] * s.components["head"]).max() > 1e-3
    # the final score is the chosen part (head.score, default product), and any part can be chosen again
    assert s.score_mode == "product" and s.step is s.components["product"] and s.window is s.window_components["product"]
    np.testing.assert_array_equal(s.factor, s.components["head"])
    for mode in ("backbone", "head", "sq"):
        again = Detector(TwoBranch(), Centred(), [PerWindow(score=mode)])
        (direct,) = trainer(epochs=0).score(again, w, np.arange(2), np.arange(2))
        chosen = s.select(mode)
        assert direct.score_mode == chosen.score_mode == mode
        np.testing.assert_array_equal(chosen.step, direct.step)
        np.testing.assert_array_equal(chosen.window, direct.window)
    with pytest.raises(ConfigError, match=r"^head.score='d': the parts kept are backbone, head, product, sq$"):
        s.select("d")


def test_a_score_part_the_detector_cannot_give_is_refused_naming_head_score():
    with pytest.raises(ConfigError, match=r"^head.score='head': there is no head; expected one of backbone$"):
        Detector(TwoBranch(), Counter(), [], score="head")
    with pytest.raises(ConfigError, match=r"^head.score='d': head=perwindow does not give it; expected one of "
                                          r"backbone, product, head, sq$"):
        Detector(TwoBranch(), Counter(), [PerWindow(score="d")])


@pytest.mark.parametrize("overrides, message", [
    (["head.score=head"], "head.score='head': there is no head; expected one of backbone"),
    (["head.score=product"], "head.score='product': there is no head; expected one of backbone"),
    (["head=madcluster", "head.score=bogus"], "head.score='bogus': head=madcluster does not give it; expected one of "
                                              "backbone, product, head, d, f, df"),
    (["head=clustering_only", "head.score=d"], "head.score='d': head=clustering_only does not give it; expected one "
                                               "of backbone, product, head, f"),
    (["head=distance_only", "head.score=df"], "head.score='df': head=distance_only does not give it; expected one "
                                              "of backbone, product, head, d"),
])
def test_bad_head_score_is_refused_at_compose_time(overrides, message):
    from madbench.checks import validate
    from tests.conftest import compose_cfg

    with pytest.raises(ConfigError) as e:
        validate(compose_cfg(overrides))
    assert str(e.value) == message


def test_a_detector_with_nothing_to_train_is_fitted_in_one_pass_and_runs_no_epoch():
    """A backbone that fits its statistics in on_fit_start leaves no parameter to train: the
    Trainer runs no epoch; the statistics come from the training windows' steps, each once."""
    from madbench.models.baselines import TrainMean
    from madbench.objectives.forecast import ForecastObjective

    x = np.random.default_rng(1).normal(size=(30, 2)).astype(np.float32)
    w = Windows(x, WindowSpec(window=4, stride=3, horizon=1))
    det = Detector(TrainMean(2, 2, 4), ForecastObjective())
    assert det.trains_by_gradient is False
    assert fit(det, w, epochs=5) == []
    tr, _ = w.split(0.2)
    steps = sorted({int(s) + k for s in w.starts[tr] for k in range(4)})  # stride 3 < window 4: overlaps once
    np.testing.assert_allclose(det.backbone.mean.numpy(), x[steps].astype(np.float64).mean(0), rtol=1e-6)


def test_step_zeroes_only_the_stepped_optimisers_gradients():
    """The carried-over gradients a reference quirk may need (USAD) stay possible."""
    det = Detector(TwoBranch(), Alternating())
    from madbench.detector import FitContext

    w = windows()
    tr = trainer()
    ctx = FitContext(tr, det, w, *w.split(0.2), torch.arange(2), torch.arange(2))
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(sgd)
    out = det(w.inputs(np.arange(4)))
    ctx.backward((out.reconstruction ** 2).mean() + (out.extras["second"] ** 2).mean())
    ctx.step("a")
    assert det.backbone.a.grad is None and det.backbone.b.grad is not None
    with pytest.raises(KeyError, match="no optimiser named"):
        ctx.step("c")
