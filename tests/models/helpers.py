"""Shared pieces of the manual-step tests (USAD, BeatGAN): a FitContext with SGD at a known
learning rate, and a spy on which pass carries the head's loss and which optimisers step."""
import numpy as np
import torch

from madbench.data.windows import Windows, WindowSpec
from madbench.detector import FitContext
from madbench.fit import Trainer


def sgd_context(det, n_inputs: int, window: int, lr: float, epoch: int = 1) -> FitContext:
    """A FitContext around ``det`` with its optimisers built as SGD(lr), at ``epoch``."""
    w = Windows(np.zeros((window * 10, n_inputs), dtype=np.float32), WindowSpec(window=window))
    tr = Trainer(epochs=1, device="cpu", progress=False, optimizer=lambda params: torch.optim.SGD(params, lr=lr))
    ctx = FitContext(tr, det, w, *w.split(0.2), torch.arange(n_inputs), torch.arange(n_inputs))
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(tr.make_optimizer)
    ctx.epoch = epoch
    return ctx


def spy_head_pass(det, ctx, head, batch) -> tuple[set, int, list]:
    """One training step of ``det``: (the optimisers holding the head's centre, how many
    times the heads' loss was computed, the names each ``ctx.step`` call stepped); checks
    that the centre moved."""
    owners = {name for name, opt in ctx.optimizers.items()
              if any(p is head.centre for g in opt.param_groups for p in g["params"])}
    calls, stepped = [], []
    real_loss, real_step = det.head_loss, ctx.step
    det.head_loss = lambda out, c=None: calls.append(1) or real_loss(out, c)
    ctx.step = lambda *names: stepped.append(names) or real_step(*names)
    centre = head.centre.detach().clone()
    det.training_step(batch, ctx)
    assert not torch.equal(centre, head.centre.detach()), "the head's centre did not move"
    return owners, len(calls), stepped


def assert_m2ad_run_scores_every_step(backbone: str, tmp_path) -> None:
    """A one-epoch job of ``backbone`` with ``scoring=m2ad`` on one tiny synthetic system:
    every step gets a finite score (no zero padding) and the residuals cover the 8 sensors,
    not the 4 covariates."""
    from madbench import run
    from tests.conftest import compose_cfg, stored

    cfg = compose_cfg([f"backbone={backbone}", "dataset.n_systems=1", "trainer.epochs=1", "scoring=m2ad",
                       "protocol=[strict,madcluster]"])
    df = run.main(cfg, tmp_path)
    assert (df.status == "ok").all()
    e = stored(tmp_path)["sys0"]
    assert np.isfinite(e.score).all()
    assert e.test.residuals.shape == (len(e.score), 8)
