"""Evaluation batches sized by memory (trainer.eval_batch_bytes) and the allocator setting
(trainer.allocator): the live-tensor byte count against hand-computed cases, the windows
per batch from a known per-window footprint, the explicit trainer.eval_batch_size winning,
the log line, and one-line errors naming the key."""
import logging
import os

import numpy as np
import pytest
import torch
from torch import nn

from madbench import memory
from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.models.base import BackboneOutput
from madbench.objectives.reconstruct import ReconstructObjective
from tests.conftest import assert_refused_before_training

MIB = 1024 ** 2


def test_live_bytes_count_storages_once_and_release_them():
    """Peak of the bytes held by live tensors: views share their storage, in-place ops add
    nothing, a freed tensor's bytes are released before the next allocation."""
    def f():
        a = torch.zeros(1000)             # 4,000 B
        b = torch.zeros(2000)             # 8,000 B: 12,000 live
        v = b.view(20, 100)[1:]           # a view: no new storage
        b.add_(1)                         # in place: nothing new
        del a
        c = torch.zeros(500)              # 2,000 B: 10,000 live
        return v, c

    assert memory.peak_bytes(f) == 12_000
    assert memory.peak_bytes(lambda: torch.zeros(3, dtype=torch.float64) + 1) == 48   # the zeros and the sum


class Wide(nn.Module):
    """A reconstruction that passes through a [B, n, n] float32 intermediate: 4·n² bytes
    of activations per window (256 KiB at n = 256) on top of the window's own few values."""

    def __init__(self, n=256):
        super().__init__()
        self.n = n
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        h = x.new_ones(x.shape[0], self.n, self.n) * self.w
        return BackboneOutput(embedding=x, reconstruction=x * h.mean((1, 2))[:, None, None])


def windows(T=200, D=3):
    return Windows(np.random.default_rng(0).normal(size=(T, D)).astype(np.float32), WindowSpec(window=10))


def test_windows_per_batch_are_the_budget_over_the_measured_bytes_of_one_window(caplog):
    det = Detector(Wide(), ReconstructObjective())
    w = windows()
    per = memory.bytes_per_window(det, lambda k: Trainer(device="cpu").batch(w, np.arange(k), torch.arange(3),
                                                                               torch.arange(3)), len(w))
    # the [256, 256] intermediate (twice: the ones and the product) and the window's few values
    assert 2 * 256 * 1024 <= per <= 2 * 256 * 1024 + 4096
    tr = Trainer(device="cpu", progress=False, eval_batch_bytes="16MiB")
    with caplog.at_level(logging.INFO, logger="madbench.fit"):
        tr.set_threads()
        assert tr.eval_windows(det, w, np.arange(3), np.arange(3)) == 16 * MIB // per
        tr.eval_windows(det, w, np.arange(3), np.arange(3))   # measured once per architecture
    lines = [r.getMessage() for r in caplog.records if "eval batches" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"trainer: eval batches of {16 * MIB // per} window(s) "
                                                   "(trainer.eval_batch_bytes 16 MiB / ")
    assert "allocator: reuse" in lines[0] or "allocator: system" in lines[0]
    # a budget below one window (2 × 1 MiB) still makes batches of one window
    assert Trainer(device="cpu", eval_batch_bytes=MIB).eval_windows(Detector(Wide(512), ReconstructObjective()), w,
                                                                    np.arange(3), np.arange(3)) == 1


class Transient(nn.Module):
    """16 MiB that live only while the forward starts (2M ones and their product: a kernel
    merged per call, as TimesNet's), then 512 KiB per window (a [256, 256] float32
    intermediate and its product, as ``Wide``): in batches of up to 32 windows the peak is
    the transient's."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        scale = (x.new_ones(2 * MIB) * self.w).mean()          # 16 MiB, freed before the windows' bytes
        h = x.new_ones(x.shape[0], 256, 256) * scale
        return BackboneOutput(embedding=x, reconstruction=x * h.mean((1, 2))[:, None, None])


def test_a_fixed_transient_does_not_hide_the_windows_bytes():
    """The peak of 1 against 4 windows is the transient's both times (0 bytes per window
    measured: eval batches of everything); the probe grows the batch until the windows'
    bytes dominate the peak."""
    w = windows(T=400)
    make = lambda k: Trainer(device="cpu").batch(w, np.arange(k), torch.arange(3), torch.arange(3))  # noqa: E731
    det = Detector(Transient(), ReconstructObjective())
    assert memory.peak_bytes(lambda: det.backbone(make(16)["x"])) < 16 * MIB + 4096   # the transient's
    per = memory.bytes_per_window(det, make, len(w))
    assert 512 * 1024 <= per <= 512 * 1024 + 4096
    # where fewer windows exist than the transient hides, the probe stops at them (and says less)
    assert memory.bytes_per_window(det, make, 4) < 512 * 1024


class Linear3(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return BackboneOutput(embedding=x, reconstruction=self.lin(x))


def test_an_explicit_eval_batch_size_wins_and_the_scores_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    det = Detector(Linear3(), ReconstructObjective())
    w = windows()
    tr = Trainer(device="cpu", progress=False, eval_batch_size=7, eval_batch_bytes="1GiB")
    assert tr.eval_windows(det, w, np.arange(3), np.arange(3)) == 7
    (a,) = tr.score(det, w, np.arange(3), np.arange(3))
    (b,) = Trainer(device="cpu", progress=False).score(det, w, np.arange(3), np.arange(3))
    np.testing.assert_allclose(a.step, b.step, rtol=1e-6)


def test_the_probe_leaves_the_random_state_and_the_mode_alone_and_runs_beside_a_compiled_backbone():
    torch.manual_seed(0)
    det = Detector(Linear3(), ReconstructObjective()).train()
    det.backbone.compile(backend="eager")
    w = windows()
    state = torch.random.get_rng_state()
    tr = Trainer(device="cpu", progress=False)
    assert tr.eval_windows(det, w, np.arange(3), np.arange(3)) >= 1
    assert torch.equal(torch.random.get_rng_state(), state) and det.training


@pytest.mark.parametrize("value,expected", [("256MiB", 256 * MIB), ("1GiB", 1024 ** 3), ("500MB", 500 * 10 ** 6),
                                            (" 2 gib ", 2 * 1024 ** 3), (3 * MIB, 3 * MIB), ("1.5MiB", 3 * MIB // 2)])
def test_sizes_parse(value, expected):
    assert memory.parse_bytes(value, "trainer.eval_batch_bytes") == expected


@pytest.mark.parametrize("bad", ["lots", "256 MiBs", "-1MiB", 1000, "0", True, 1.5e9, None, "1KiB"])
def test_a_bad_budget_is_a_one_line_config_error_naming_the_key(bad):
    with pytest.raises(ConfigError, match=r"^trainer\.eval_batch_bytes=.*; expected a size of at least 1MiB, e\.g\. "
                                          r"256MiB, 1GiB or a number of bytes$"):
        Trainer(device="cpu", eval_batch_bytes=bad)


def test_bad_eval_batch_size_and_allocator_are_one_line_config_errors():
    for bad in (0, -3, 2.5, "many", True):
        with pytest.raises(ConfigError, match=r"^trainer\.eval_batch_size=.*; expected an integer >= 1 or null"):
            Trainer(device="cpu", eval_batch_size=bad)
    with pytest.raises(ConfigError, match=r"^trainer\.allocator='tcmalloc'; expected one of \['reuse', 'system'\]$"):
        Trainer(device="cpu", allocator="tcmalloc")


def test_a_run_with_a_bad_budget_is_refused_before_training(tmp_path):
    assert_refused_before_training(["trainer.eval_batch_bytes=lots"], tmp_path, r"^trainer\.eval_batch_bytes='lots'")


def test_reuse_sets_glibc_malloc_once_and_says_so():
    import ctypes.util
    import platform

    note = memory.set_allocator("reuse")
    assert memory.set_allocator("reuse") == note
    if ctypes.util.find_library("c") and platform.libc_ver()[0] == "glibc":
        assert note == "reuse (glibc: no mmap per block, trim above 1 GiB)"
        # malloc's settings cannot be undone in a process: a later `system` says so
        assert memory.set_allocator("system").startswith("reuse (set earlier in this process")


def test_onednn_cache_is_set_only_when_asked_and_a_value_in_the_environment_wins(monkeypatch):
    """``trainer.onednn_cache`` (TimesNet's recipe: 64) caps oneDNN's primitive cache through
    the variable oneDNN reads; null leaves oneDNN's default; an exported value wins."""
    monkeypatch.delenv(memory.ONEDNN_ENV, raising=False)
    monkeypatch.setattr(memory, "_onednn_set", None)
    assert memory.bound_onednn_cache(None) == "oneDNN primitive cache default"
    assert memory.ONEDNN_ENV not in os.environ
    tr = Trainer(device="cpu", progress=False, onednn_cache=64)
    tr.set_threads()
    assert os.environ[memory.ONEDNN_ENV] == "64"
    assert tr._allocator_note.endswith("; oneDNN primitive cache 64 (trainer.onednn_cache)")
    monkeypatch.setenv(memory.ONEDNN_ENV, "8")
    assert memory.bound_onednn_cache(64) == f"oneDNN primitive cache 8 ({memory.ONEDNN_ENV} from the environment)"
    assert os.environ[memory.ONEDNN_ENV] == "8"


@pytest.mark.parametrize("bad", [0, -1, "64", 2.5, True])
def test_a_bad_onednn_cache_is_refused_naming_the_key(bad):
    with pytest.raises(ConfigError, match=r"^trainer\.onednn_cache=.*; expected an integer >= 1"):
        Trainer(device="cpu", onednn_cache=bad)


def test_timesnet_asks_for_a_small_onednn_cache_and_other_backbones_keep_the_default():
    from tests.conftest import compose_cfg

    assert compose_cfg(["backbone=timesnet", "dataset=smap"], tiny=False).trainer.onednn_cache == 64
    assert compose_cfg([], tiny=False).trainer.onednn_cache is None
