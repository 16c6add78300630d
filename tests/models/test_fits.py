"""backbone=fits: the parameter count at the reference's anomaly-detection sizes (the paper's
"10k"), the low-pass + frequency interpolation (an identity upsampler reconstructs the
low-frequency part of a window exactly and drops what lies above the cut-off), the forward
pass against the equations (numpy FFT), and the one-line refusal of a cut-off above Nyquist."""
import numpy as np
import pytest
import torch

from madbench.errors import ConfigError
from madbench.models.fits import FITS
from tests.conftest import assert_refused_before_training


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_count_at_the_references_sizes():
    # AD/scripts: dsr 4, cut_freq 0 (= the Nyquist bin of the downsampled window), windows 400 or 200
    m = FITS(55, 1, 400, dsr=4)
    assert (m.n, m.cut_freq, m.up_bins) == (100, 50, 200)
    assert n_params(m) == 50 * 200 + 200 == 10_200  # complex weights + bias: "10k parameters"
    assert n_params(FITS(38, 38, 200, dsr=4)) == 25 * 100 + 100
    assert all(p.is_complex() for p in m.parameters())
    # one layer per channel with individual=true
    assert n_params(FITS(3, 3, 200, dsr=4, individual=True)) == 3 * 2600


def identity_upsampler(m: FITS) -> None:
    """W = [I; 0] (bins kept as they are, the rest zero), no bias: the model is then a pure
    low-pass filter followed by interpolation back to the window's length."""
    with torch.no_grad():
        m.freq_upsampler.weight.zero_()
        m.freq_upsampler.weight[: m.cut_freq, : m.cut_freq] = torch.eye(m.cut_freq, dtype=torch.cfloat)
        m.freq_upsampler.bias.zero_()


def test_low_pass_and_interpolation():
    L, dsr, cut = 400, 4, 10
    t = torch.arange(L, dtype=torch.float32)
    low = 1.5 + torch.sin(2 * torch.pi * 2 * t / L) + 0.3 * torch.cos(2 * torch.pi * 7 * t / L)
    high = 0.5 * torch.sin(2 * torch.pi * 30 * t / L)   # bin 30 of the 100 downsampled steps: above the cut
    m = FITS(1, 1, L, dsr=dsr, cut_freq=cut)
    identity_upsampler(m)
    out = m((low + high)[None, :, None])
    # the downsampled window (every 4th step) is upsampled back to 400 steps: the low-frequency
    # part at every step, including the 300 steps the model never saw; the high one is gone
    torch.testing.assert_close(out.reconstruction[0, :, 0], low, atol=1e-4, rtol=1e-4)
    # nothing above the upsampled cut-off (cut_freq * L / n = 40 bins) in the normalised output
    spec = torch.fft.rfft(out.embedding[0, :, 0])
    assert spec[m.up_bins:].abs().max() < 1e-3
    # a cut-off above bin 30 lets the high component through
    m = FITS(1, 1, L, dsr=dsr, cut_freq=40)
    identity_upsampler(m)
    torch.testing.assert_close(m((low + high)[None, :, None]).reconstruction[0, :, 0], low + high, atol=1e-4,
                               rtol=1e-4)


def test_forward_against_the_equations():
    rng = np.random.default_rng(0)
    L, C, dsr, cut = 60, 3, 3, 7
    torch.manual_seed(0)
    m = FITS(C, 2, L, dsr=dsr, cut_freq=cut)
    x = rng.normal(size=(2, L, C)).astype(np.float32)
    W = m.freq_upsampler.weight.detach().numpy()
    b = m.freq_upsampler.bias.detach().numpy()
    xd = x[:, ::dsr].astype(np.float64)
    n = xd.shape[1]
    mean = xd.mean(1, keepdims=True)
    var = xd.var(1, ddof=1, keepdims=True) + 1e-5
    spec = np.fft.rfft((xd - mean) / np.sqrt(var), axis=1)[:, :cut]
    up = np.einsum("ok,bkc->boc", W, spec) + b[None, :, None]
    full = np.zeros((2, L // 2 + 1, C), complex)
    full[:, : up.shape[1]] = up
    rec = np.fft.irfft(full, n=L, axis=1) * (L / n) * np.sqrt(var) + mean
    out = m(torch.from_numpy(x))
    np.testing.assert_allclose(out.reconstruction.detach().numpy(), rec[..., :2], rtol=1e-4, atol=1e-4)


def test_odd_windows_keep_their_length():
    m = FITS(2, 2, 201, dsr=4)
    assert m.n == 51 and m(torch.randn(3, 201, 2)).reconstruction.shape == (3, 201, 2)


def test_cut_off_above_nyquist_is_one_line():
    with pytest.raises(ConfigError, match=r"backbone.model.cut_freq=51 is above the Nyquist bin 50") as e:
        FITS(1, 1, 400, dsr=4, cut_freq=51)
    assert "\n" not in str(e.value) and "dataset.window=400 / backbone.model.dsr=4 = 100 steps" in str(e.value)
    with pytest.raises(ConfigError, match=r"backbone.model.cut_freq=0; expected an integer in 1..50"):
        FITS(1, 1, 400, dsr=4, cut_freq=0)
    with pytest.raises(ConfigError, match=r"backbone.model.dsr=0"):
        FITS(1, 1, 400, dsr=0)


def test_a_job_with_a_cut_off_above_nyquist_is_refused_before_training(tmp_path):
    # debug=tiny: window 20, dsr 4 -> 5 steps, Nyquist bin 2
    assert_refused_before_training(["backbone=fits", "backbone.model.cut_freq=3"], tmp_path,
                                   r"backbone.model.cut_freq=3 is above the Nyquist bin 2")
