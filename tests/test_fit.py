import numpy as np
import pytest
import torch
from torch import nn

from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector
from madbench.errors import ConfigError, TrainingError
from madbench.fit import Trainer, resolve_device
from madbench.models.base import BackboneOutput
from madbench.objectives.forecast import ForecastObjective
from madbench.objectives.reconstruct import ReconstructObjective


class Zero(nn.Module):
    """Predicts 0 for every target, so every residual equals the target itself."""

    def __init__(self, n_out, horizon):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.n_out, self.horizon = n_out, horizon

    def forward(self, x):
        B, L, _ = x.shape
        z = torch.zeros(B, self.horizon or L, self.n_out) * self.w
        return BackboneOutput(embedding=x, forecast=z if self.horizon else None,
                              reconstruction=None if self.horizon else z)


def data(T=60, D=3, seed=0):
    return np.random.default_rng(seed).normal(size=(T, D)).astype(np.float32)


@pytest.mark.parametrize("objective,horizon", [(ForecastObjective(), 1), (ReconstructObjective(), 0)])
def test_scores_are_placed_on_the_timestamps_they_describe(objective, horizon):
    x = data()
    sensors = np.array([0, 2])
    spec = WindowSpec(window=10, horizon=horizon)
    tr = Trainer(epochs=0, device="cpu", progress=False, eval_batch_size=7)
    (out,) = tr.score(Detector(Zero(2, horizon), objective), Windows(x, spec), np.arange(3), sensors)
    expected = (x[:, sensors] ** 2).mean(1)
    if horizon:
        # a forecast describes its target step: the first `window` steps have no score
        assert np.isnan(out.step[:10]).all()
        np.testing.assert_allclose(out.step[10:], expected[10:], rtol=1e-6)
        np.testing.assert_allclose(out.residuals[10:], x[10:, sensors], rtol=1e-6)
    else:
        # a reconstruction covers every step; averaged over the windows that cover it
        np.testing.assert_allclose(out.step, expected, rtol=1e-6)
    assert len(out.window) == len(out.window_start) == len(Windows(x, spec))
    # the steps a window's score describes: the target step, or the whole window
    np.testing.assert_array_equal(out.offsets, [10] if horizon else np.arange(10))


class Ramp(nn.Module):
    """Reconstructs step j of every window as x + j: the residual of step t in the window
    that starts at s is −(t − s), so each window gives a step a different residual."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        j = torch.arange(x.shape[1], dtype=x.dtype)[None, :, None]
        return BackboneOutput(embedding=x, reconstruction=x + j + 0 * self.w)


def test_reconstruction_scores_are_averaged_over_the_windows_that_cover_a_step():
    x = data(T=6, D=1)
    (out,) = Trainer(epochs=0, device="cpu", progress=False, eval_batch_size=2).score(
        Detector(Ramp(), ReconstructObjective()), Windows(x, WindowSpec(window=3)), np.arange(1), np.arange(1))
    # windows start at 0..3; step t is covered by the starts s in [t-2, t] ∩ [0, 3]:
    #   t=0: s=0 → res² 0                         t=3: s=1,2,3 → (4 + 1 + 0)/3
    #   t=1: s=0,1 → (1 + 0)/2                    t=4: s=2,3 → (4 + 1)/2
    #   t=2: s=0,1,2 → (4 + 1 + 0)/3              t=5: s=3 → 4
    np.testing.assert_allclose(out.step, [0.0, 0.5, 5 / 3, 5 / 3, 2.5, 4.0], rtol=1e-6)
    np.testing.assert_allclose(out.residuals[:, 0], [0.0, -0.5, -1.0, -1.0, -1.5, -2.0], rtol=1e-6)
    # window scores are the mean of each window's own step scores: (0 + 1 + 4)/3 for every window
    np.testing.assert_allclose(out.window, [5 / 3] * 4, rtol=1e-6)


def test_unscored_steps_stay_missing_with_stride():
    x = data(T=23)
    spec = WindowSpec(window=5, stride=5)  # windows at 0,5,10,15 cover 0..19
    (out,) = Trainer(epochs=0, device="cpu", progress=False).score(
        Detector(Zero(3, 0), ReconstructObjective()), Windows(x, spec), np.arange(3), np.arange(3))
    assert np.isfinite(out.step[:20]).all() and np.isnan(out.step[20:]).all()


def test_non_finite_loss_is_a_training_error():
    from madbench.models.lstm import LSTMForecaster

    x = data(T=80)
    tr = Trainer(epochs=1, batch_size=16, device="cpu", progress=False, inject_nan_loss=True)
    with pytest.raises(TrainingError, match="non-finite training loss"):
        tr.fit(Detector(LSTMForecaster(3, 3, 10, hidden=8), ForecastObjective()), Windows(x, WindowSpec(10, horizon=1)),
               np.arange(3), np.arange(3))


def test_training_reduces_loss():
    from madbench.models.lstm import LSTMForecaster

    t = np.arange(300, dtype=np.float32)
    x = np.stack([np.sin(t / 8), np.cos(t / 8)], 1)
    torch.manual_seed(0)
    tr = Trainer(epochs=3, batch_size=32, patience=5, device="cpu", progress=False,
                 optimizer=lambda params: torch.optim.Adam(params, lr=1e-2))
    hist = tr.fit(Detector(LSTMForecaster(2, 2, 10, hidden=8), ForecastObjective()),
                  Windows(x, WindowSpec(10, horizon=1)), np.arange(2), np.arange(2))
    assert len(hist) == 3
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(np.isfinite(h["val_loss"]) for h in hist)


def test_early_stopping_after_patience_epochs_without_improvement():
    x = data(T=80)
    # lr = 0: the validation loss never improves after the first epoch
    tr = Trainer(epochs=20, batch_size=16, patience=3, device="cpu", progress=False,
                 optimizer=lambda params: torch.optim.SGD(params, lr=0.0))
    hist = tr.fit(Detector(Zero(3, 1), ForecastObjective()), Windows(x, WindowSpec(10, horizon=1)), np.arange(3),
                  np.arange(3))
    assert len(hist) == 1 + 3


@pytest.mark.parametrize("name", ["gpu", "cuda:7x", "tpu"])
def test_unknown_device_is_a_config_error(name):
    with pytest.raises(ConfigError, match="trainer.device"):
        resolve_device(name)


def test_auto_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


class Linear(nn.Module):
    """A per-step linear reconstruction: small enough to compile in seconds."""

    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return BackboneOutput(embedding=x, reconstruction=self.lin(x))


def test_compile_keeps_the_state_dict_keys_and_the_scores():
    """trainer.compile compiles the backbone in place: its state_dict round-trips into an
    uncompiled Detector and the scores are the same (the eager backend: dynamo's graph
    capture without code generation, so no C++ toolchain is needed)."""
    w = Windows(data(T=73), WindowSpec(window=10))
    torch.manual_seed(0)
    det = Detector(Linear(3), ReconstructObjective())
    keys = list(det.state_dict())
    tr = Trainer(epochs=1, batch_size=16, device="cpu", progress=False, compile="eager", eval_batch_size=64)
    tr.fit(det, w, np.arange(3), np.arange(3))
    assert det.backbone._compiled_call_impl is not None and list(det.state_dict()) == keys
    (compiled,) = tr.score(det, w, np.arange(3), np.arange(3))
    plain = Detector(Linear(3), ReconstructObjective())
    plain.load_state_dict(det.state_dict())
    (eager,) = Trainer(epochs=0, device="cpu", progress=False).score(plain, w, np.arange(3), np.arange(3))
    np.testing.assert_allclose(compiled.step, eager.step, rtol=1e-6)
    with pytest.raises(ConfigError, match=r"^trainer.compile='nope'; expected true, false or a torch.compile backend"):
        Trainer(device="cpu", compile="nope")
    assert Trainer(device="cpu", compile=True).compile == "inductor" and Trainer(device="cpu").compile is None

# -- trainer.num_threads (issue 16) ----------------------------------------------------------
@pytest.fixture
def machine(monkeypatch):
    """A fake machine: ``cores`` usable cores, no SLURM, no concurrent jobs, unless set."""
    import os

    from madbench import fit

    def set_(cores, load=0.0, **env):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
        for var in ("SLURM_CPUS_PER_TASK", *fit.CONCURRENCY_VARS):
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            monkeypatch.setenv(var, str(value))
    return set_


def test_auto_threads_divide_the_cores_among_concurrent_jobs(machine):
    from madbench.fit import AUTO_THREADS_CAP, resolve_num_threads

    machine(2)
    assert resolve_num_threads("auto")[0] == 2  # one job alone on 2 cores
    machine(2, MADBENCH_CONCURRENT_JOBS=4)       # a 4-job submitit_local sweep: never 8 threads on 2 cores
    assert resolve_num_threads("auto")[0] == 1
    machine(16, MADBENCH_CONCURRENT_JOBS=4)      # joblib n_jobs=4 on 16 cores
    assert resolve_num_threads("auto")[0] == min(4, AUTO_THREADS_CAP)
    machine(16, PYTEST_XDIST_WORKER_COUNT=2, MADBENCH_CONCURRENT_JOBS=4)  # 2 workers, each a 4-job sweep
    assert resolve_num_threads("auto")[0] == 2
    machine(64, SLURM_CPUS_PER_TASK=8)           # a SLURM task sees the node's cores, may use 8
    assert resolve_num_threads("auto")[0] == min(8, AUTO_THREADS_CAP)
    machine(64)                                  # small models: more threads stop paying
    assert resolve_num_threads("auto")[0] == AUTO_THREADS_CAP
    machine(2, load=2.5)                         # no idle CPU (other users' jobs): threads would stall
    assert resolve_num_threads("auto") == (1, "auto: the machine is busy (load average 1.2 per CPU)")
    machine(16, load=8.0)                        # half the CPUs idle
    assert resolve_num_threads("auto")[0] == AUTO_THREADS_CAP


def test_explicit_threads_win_and_bad_values_are_refused(machine):
    from madbench.fit import resolve_num_threads

    machine(2, load=9.0, MADBENCH_CONCURRENT_JOBS=4)
    assert resolve_num_threads(3)[0] == 3
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(ConfigError, match=r"^trainer\.num_threads=.*expected auto or an integer >= 1$"):
            resolve_num_threads(bad)


def test_trainer_sets_torch_threads_once_and_logs_it(machine, caplog):
    import logging

    machine(2, MADBENCH_CONCURRENT_JOBS=2)
    before = torch.get_num_threads()
    try:
        tr = Trainer(epochs=1, device="cpu", progress=False, num_threads="auto")
        det = Detector(Zero(2, 1), ForecastObjective())
        w = Windows(data(), WindowSpec(window=10, horizon=1))
        with caplog.at_level(logging.INFO, logger="madbench.fit"):
            tr.fit(det, w, np.arange(3), np.array([0, 2]))
            tr.score(det, w, np.arange(3), np.array([0, 2]))
        assert torch.get_num_threads() == 1
        lines = [r.getMessage() for r in caplog.records if "CPU thread" in r.getMessage()]
        assert lines == ["trainer: 1 CPU thread(s) (auto: 2 core(s) / 2 concurrent job(s), at most 4)"]
    finally:
        torch.set_num_threads(before)


def test_progress_bars_stay_off_in_log_files():
    """Per-batch bars flood SLURM logs and `make run > log`: on a stream that is not a
    terminal they print nothing; on a terminal they show; progress=false hides them."""
    import io

    from tqdm.auto import tqdm

    from madbench.fit import bar_disabled

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, progress, shown in ((io.StringIO(), True, False), (Tty(), True, True), (Tty(), False, False)):
        for _ in tqdm(range(50), file=stream, disable=bar_disabled(progress), mininterval=0):
            pass
        assert bool(stream.getvalue()) == shown, (type(stream).__name__, progress)


# -- trainer.deterministic ------------------------------------------------------------------
def test_deterministic_auto_is_on_on_the_cpu_only_and_true_false_force_it():
    from madbench.fit import resolve_deterministic

    assert Trainer(device="cpu", progress=False).deterministic is True
    assert Trainer(device="cpu", progress=False, deterministic=False).deterministic is False
    assert Trainer(device="cpu", progress=False, deterministic=True).deterministic is True
    for dev in ("cuda", "mps"):   # resolved without the device: no GPU needed here
        assert resolve_deterministic("auto", torch.device(dev)) is False
        assert resolve_deterministic(True, torch.device(dev)) is True
        assert resolve_deterministic(False, torch.device(dev)) is False


@pytest.mark.parametrize("bad", ["yes", "on", 1, 0, None, 1.0])
def test_a_bad_deterministic_value_is_a_one_line_config_error(bad):
    from madbench.checks import validate
    from tests.conftest import compose_cfg

    with pytest.raises(ConfigError, match=r"^trainer\.deterministic=.*; expected auto, true or false$"):
        Trainer(device="cpu", progress=False, deterministic=bad)
    cfg = compose_cfg([])
    cfg.trainer.deterministic = bad
    with pytest.raises(ConfigError, match=r"^trainer\.deterministic=.*; expected auto, true or false$"):
        validate(cfg)
