"""OmniAnomaly (Su et al., KDD 2019): a GRU variational autoencoder with a stochastic
latent chain, planar normalizing flows and a linear-Gaussian state-space prior
(BACKBONES.md, OmniAnomaly; the authors' TensorFlow code NetManAIOps/OmniAnomaly,
omni_anomaly/{model,wrapper,recurrent_distribution}.py, read for this).

- **q-net**: GRU(D_in → 500), then 2 dense layers of 500 *without activation* (the
  reference's ``rnn()`` calls ``tf.layers.dense`` with none) → e_t. The latent chain:
  [μ_t, σ_t] = dense([e_t, z_{t−1}]) with σ = softplus(·) + 1e-4, z_0 = 0,
  z_t = μ_t + σ_t·ε_t; then 20 planar flows per step (y = z + û·tanh(wᵀz + b), û making
  each flow invertible; tfsnippet's ``PlanarNormalizingFlow``), applied after the chain as
  in the code (the paper's figure suggests inside it).
- **p-net**: GRU(z → 500) + 2 dense 500 (no activation) → μ_x, σ_x = softplus(·) + 1e-4
  per sensor.
- **prior**: tfp's LinearGaussianStateSpaceModel with identity matrices and unit noises:
  a random walk s_1 ~ N(0, I), s_t = s_{t−1} + N(0, I), observed as y_t = s_t + N(0, I).
  Per latent dimension y ~ N(0, Σ) with Σ_ij = min(i, j) + δ_ij; with Σ = CCᵀ the
  per-step terms log p(y_t | y_<t) = log N(v_t; 0, 1) − log C_tt, v = C⁻¹y, are exactly
  the Kalman filter's (``forward_filter``) one-step log-likelihoods.

The MADCluster embedding is the deterministic q-net state e_t [B, L, 500]
(BACKBONES.md point 4), not the sampled, flow-transformed z.

**Sampling.** Training draws ε from torch's generator (seeded by the job). In eval mode
(validation and scoring) ε is a fixed function of the job seed and the window's content
(:func:`window_normals`): a window gets the same noise whichever batch it is in, at any
batch size or order, so the same seed gives the same scores. ``n_samples`` z samples are
drawn per window in eval mode (training uses one, as the reference).

**The reference's bugs** (default corrected; ``reference_quirks=true`` reproduces them):

1. ``RecurrentDistribution.sample`` runs ``tf.scan(..., back_prop=False)``, and so does
   ``log_prob``: the z samples and their base density are constants, so the q-net (GRU,
   dense layers, μ/σ layers) never receives a gradient from the ELBO; only the flows and
   the p-net train. Quirk: the chain runs under ``no_grad``.
2. ``log_prob_step`` evaluates log q(z_t) with μ/σ from ``[z_t, e_t]`` — the current z
   instead of z_{t−1}, concatenated in the opposite order to the one the dense kernel was
   built for. Quirk: the same (it changes the loss value only, since 1. leaves it no
   gradient).
3. ``sample`` replaces the noise by ``tf.truncated_normal`` (|ε| < 2) while the density
   assumes a Gaussian. Quirk: truncated noise.
4. ``rnn()`` averages a 4-D input over its first axis, so with several z samples the
   p-net decodes the *mean* z. Quirk: the same when ``n_samples`` > 1.
5. ``get_training_loss`` keeps only log p(x|z) as the log-joint: the prior term is left
   out of the loss. That one lives in the objective (``objectives/omnianomaly.py``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput

LOG_2PI = math.log(2 * math.pi)
TRUNCATION = 2.0  # tf.truncated_normal re-draws values beyond two standard deviations
M32 = 0xFFFFFFFF


# -- per-window noise: a fixed function of (seed, window content, sample, step, dim) ----------
def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """x·c mod 2³² for int64 tensors holding values in [0, 2³²), without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & M32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche (C. Wellons' "lowbias32")."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def window_keys(x: torch.Tensor, seed: int) -> torch.Tensor:
    """One 32-bit key per window [B] from the exact bits of its values and the seed."""
    bits = x.float().contiguous().view(torch.int32).to(torch.int64) & M32      # [B, L, D]
    pos = torch.arange(bits[0].numel(), device=x.device, dtype=torch.int64).view(bits.shape[1:])
    salt = mix32(torch.tensor(int(seed) & M32, dtype=torch.int64, device=x.device))
    h = mix32(bits ^ mix32(pos ^ salt))
    return mix32((h.sum((1, 2)) & M32) ^ salt)


def window_uniforms(x: torch.Tensor, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniforms in (0, 1), float64, [shape[0], B, *shape[1:]]: element (s, b, ...) depends
    only on the seed, window b's content and its own position."""
    key = window_keys(x, seed)                                                  # [B]
    count = torch.arange(math.prod(shape), device=x.device, dtype=torch.int64).view(shape[0], 1, *shape[1:])
    k = key.view(1, -1, *([1] * (len(shape) - 1)))
    h = mix32(mix32(count ^ k) ^ ((k + 0x9E3779B9) & M32))
    return (h.double() + 0.5) / 2.0 ** 32


def normal_from_uniform(u: torch.Tensor, truncated: bool = False) -> torch.Tensor:
    """Inverse-CDF normal; ``truncated``: conditioned on |ε| < 2 (tf.truncated_normal)."""
    if truncated:
        lo = torch.special.ndtr(torch.tensor(-TRUNCATION, dtype=u.dtype, device=u.device))
        u = lo + u * (1 - 2 * lo)
    return torch.special.ndtri(u)


# -- the parts --------------------------------------------------------------------------------
class PlanarFlow(nn.Module):
    """y = z + û·tanh(wᵀz + b), û = u + (m(wᵀu) − wᵀu)·w/‖w‖², m(a) = softplus(a) − 1;
    log|det ∂y/∂z| = log|1 + (1 − tanh²)·wᵀû|. tfsnippet's initialisation: w, u ~ N(0, 0.01²), b = 0."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim) * 0.01)
        self.b = nn.Parameter(torch.zeros(1))
        self.u = nn.Parameter(torch.randn(dim) * 0.01)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wu = torch.dot(self.w, self.u)
        u_hat = self.u + (F.softplus(wu) - 1 - wu) * self.w / (self.w ** 2).sum()
        t = torch.tanh(z @ self.w + self.b)
        y = z + t.unsqueeze(-1) * u_hat
        log_det = torch.log(torch.abs(1 + (1 - t ** 2) * torch.dot(self.w, u_hat)))
        return y, log_det


def random_walk_cholesky(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(C⁻¹, log diag C) of Σ_ij = min(i, j) + δ_ij (i, j = 1..length), the covariance of
    the reference's state-space prior per latent dimension."""
    t = torch.arange(1, length + 1, dtype=torch.float64)
    cov = torch.minimum(t[:, None], t[None, :]) + torch.eye(length, dtype=torch.float64)
    c = torch.linalg.cholesky(cov)
    c_inv = torch.linalg.solve_triangular(c, torch.eye(length, dtype=torch.float64), upper=False)
    return c_inv.float(), torch.log(torch.diagonal(c)).float()


def _tf_init(module: nn.Module) -> None:
    """TensorFlow 1's defaults, as the reference got them: dense kernels Glorot-uniform and
    zero biases; GRU kernels Glorot-uniform, gate biases 1, candidate bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.GRU):
            h = m.hidden_size
            for name, p in m.named_parameters():
                if name.startswith("weight"):
                    for g in range(3):
                        nn.init.xavier_uniform_(p.data[g * h:(g + 1) * h])
                elif name.startswith("bias_ih"):
                    nn.init.zeros_(p)
                    nn.init.ones_(p.data[: 2 * h])   # reset and update gates
                else:
                    nn.init.zeros_(p)


def _rnn_net(n_in: int, hidden: int, dense_dim: int, dense_layers: int) -> tuple[nn.GRU, nn.Sequential]:
    dims = [hidden] + [dense_dim] * dense_layers
    return (nn.GRU(n_in, hidden, batch_first=True),
            nn.Sequential(*[nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]))


class OmniAnomaly(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, rnn_hidden: int = 500, dense_dim: int = 500,
                 dense_layers: int = 2, z_dim: int = 3, nf_layers: int = 20, std_epsilon: float = 1e-4,
                 n_samples: int = 1, seed: int = 0, reference_quirks: bool = False):
        super().__init__()
        for key, v, low in (("rnn_hidden", rnn_hidden, 1), ("dense_dim", dense_dim, 1), ("dense_layers", dense_layers, 0),
                            ("z_dim", z_dim, 1), ("nf_layers", nf_layers, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ConfigError(f"backbone.model.{key}={v}; expected an integer >= {low}")
        if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
            raise ConfigError(f"backbone.n_samples={n_samples}; expected an integer >= 1 (z samples per window at test)")
        if not float(std_epsilon) > 0:
            raise ConfigError(f"backbone.model.std_epsilon={std_epsilon}; expected a positive number")
        self.z_dim, self.n_samples, self.seed = z_dim, n_samples, int(seed)
        self.std_epsilon = float(std_epsilon)
        self.reference_quirks = bool(reference_quirks)
        self.q_rnn, self.q_dense = _rnn_net(n_inputs, rnn_hidden, dense_dim, dense_layers)
        e_dim = dense_dim if dense_layers else rnn_hidden
        self.e_dim = e_dim
        # [μ, pre-softplus σ] of q(z_t | e_t, z_{t−1}); inputs ordered [e_t, z_{t−1}] as in sample_step
        self.z_mean = nn.Linear(e_dim + z_dim, z_dim)
        self.z_std = nn.Linear(e_dim + z_dim, z_dim)
        self.flows = nn.ModuleList(PlanarFlow(z_dim) for _ in range(nf_layers))
        self.p_rnn, self.p_dense = _rnn_net(z_dim, rnn_hidden, dense_dim, dense_layers)
        self.x_mean = nn.Linear(e_dim, n_outputs)
        self.x_std = nn.Linear(e_dim, n_outputs)
        _tf_init(self)
        c_inv, log_diag = random_walk_cholesky(window)
        self.register_buffer("prior_c_inv", c_inv, persistent=False)
        self.register_buffer("prior_log_diag", log_diag, persistent=False)

    # -- pieces, public for the tests ---------------------------------------------------------
    def noise(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """ε [n, B, L, z]: torch's generator while training, the window's own in eval mode."""
        shape = (n, x.shape[0], x.shape[1], self.z_dim)
        if self.training:
            if not self.reference_quirks:
                return torch.randn(shape, device=x.device)
            u = torch.rand(shape, device=x.device, dtype=torch.float64)
        else:
            u = window_uniforms(x, self.seed, (n, x.shape[1], self.z_dim))
        return normal_from_uniform(u, truncated=self.reference_quirks).float()

    def prior_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """Per-step log p(y_t | y_<t) under the state-space prior, summed over z: [..., L, z] → [..., L]."""
        L = y.shape[-2]
        if L == self.prior_c_inv.shape[0]:
            c_inv, log_diag = self.prior_c_inv, self.prior_log_diag
        else:
            c_inv, log_diag = (t.to(y.device) for t in random_walk_cholesky(L))
        v = torch.einsum("ts,...sd->...td", c_inv, y.float())
        return (-0.5 * v ** 2 - log_diag[:, None] - 0.5 * LOG_2PI).sum(-1)

    def flow(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)
        for f in self.flows:
            z, ld = f(z)
            log_det = log_det + ld
        return z, log_det

    def chain(self, e: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The latent chain: (z, μ, σ), each [n, B, L, z]. The e_t parts of μ and σ are
        computed for all steps at once; only the z_{t−1} parts run step by step."""
        E = self.e_dim
        w = torch.cat([self.z_mean.weight, self.z_std.weight])                  # [2z, E + z]
        b = torch.cat([self.z_mean.bias, self.z_std.bias])
        a = F.linear(e, w[:, :E], b)                                            # [B, L, 2z]
        w_z = w[:, E:]                                                          # [2z, z]
        n, B, L, Z = eps.shape
        z_prev = eps.new_zeros(n, B, Z)
        zs, mus, sds = [], [], []
        for t in range(L):
            h = a[:, t] + z_prev @ w_z.T                                        # [n, B, 2z]
            mu, sd = h[..., :Z], F.softplus(h[..., Z:]) + self.std_epsilon
            z_prev = mu + sd * eps[:, :, t]
            zs.append(z_prev)
            mus.append(mu)
            sds.append(sd)
        return torch.stack(zs, 2), torch.stack(mus, 2), torch.stack(sds, 2)

    def base_log_prob(self, z, mu, sd, eps, e) -> torch.Tensor:
        """log q(z_t | ·) of the chain's own samples, summed over z: [n, B, L]."""
        if not self.reference_quirks:
            return (-0.5 * eps ** 2 - torch.log(sd) - 0.5 * LOG_2PI).sum(-1)
        # log_prob_step: μ, σ from [z_t, e_t] through the kernel built for [e_t, z_{t−1}]
        inp = torch.cat([z, e.unsqueeze(0).expand(z.shape[0], -1, -1, -1)], -1)
        mu_q = self.z_mean(inp)
        sd_q = F.softplus(self.z_std(inp)) + self.std_epsilon
        return (-0.5 * ((z - mu_q) / sd_q) ** 2 - torch.log(sd_q) - 0.5 * LOG_2PI).sum(-1)

    def decode(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x | y): [n, B, L, z] → (μ_x, σ_x), each [n, B, L, S]."""
        n, B, L, Z = y.shape
        h = self.p_dense(self.p_rnn(y.reshape(n * B, L, Z))[0])
        mean = self.x_mean(h).view(n, B, L, -1)
        std = (F.softplus(self.x_std(h)) + self.std_epsilon).view(n, B, L, -1)
        return mean, std

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> BackboneOutput:
        e = self.q_dense(self.q_rnn(x)[0])                                      # [B, L, E]
        n = 1 if self.training else self.n_samples
        eps = self.noise(x, n)
        if self.reference_quirks:
            with torch.no_grad():                     # tf.scan(back_prop=False): no gradient to the q-net
                z, mu, sd = self.chain(e, eps)
                log_q0 = self.base_log_prob(z, mu, sd, eps, e)
        else:
            z, mu, sd = self.chain(e, eps)
            log_q0 = self.base_log_prob(z, mu, sd, eps, e)
        y, log_det = self.flow(z)
        decoded = y.mean(0, keepdim=True) if (self.reference_quirks and n > 1) else y
        px_mean, px_std = self.decode(decoded)
        return BackboneOutput(embedding=e, extras={
            "px_mean": px_mean, "px_std": px_std,
            "log_q": log_q0 - log_det,                 # log q(y) = log q(z) − log|det ∂y/∂z|
            "log_prior": self.prior_log_prob(y),
            "z": y,
        })
