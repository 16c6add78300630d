"""BeatGAN's convolutional generator and discriminator (Zhou et al. 2019; BACKBONES.md,
BeatGAN; hi-bingo/BeatGAN ``experiments/ecg/network.py`` and ``model.py``).

Generator G = encoder + decoder, on the window as channels × time [B, D_in, L]:

- encoder: Conv1d(D_in → f, k4 s2 p1) – LeakyReLU(0.2), then ``layers − 1`` blocks
  Conv1d(k4 s2 p1, channels doubling) – BatchNorm – LeakyReLU(0.2), then
  Conv1d(f·2^(layers−1) → latent, k = the remaining length, s1 p0): one latent vector
  [B, latent, 1] per window. No conv has a bias.
- decoder (the mirror): ConvTranspose1d(latent → f·2^(layers−1), k = that length) – BN –
  ReLU, ``layers − 1`` blocks ConvTranspose1d(k4 s2 p1, channels halving) – BN – ReLU, then
  ConvTranspose1d(f → D_in, k4 s2 p1) – Tanh (``out_activation``; TimeSeAD uses Sigmoid).

Discriminator D = the same encoder with one output and a Sigmoid; its features are the
map before that last conv, [B, f·2^(layers−1), k].

Window lengths. The official code is written for L = 320 (five halvings leave 10 steps,
so the last kernel is 10); TimeSeAD computes it as L // 32 (L = 100: 50, 25, 12, 6, 3 →
k3) and restores the odd lengths in the decoder with ``output_size``. Here every
length is computed from ``window`` the same way (k4 s2 p1 halves a length, rounding
down), the decoder restores the encoder's lengths exactly, and a window shorter than
2^layers (the stack would run out of steps) is refused with a ConfigError naming
``dataset.window``. ``layers`` is the paper's 5; the CPU-test sizes use fewer.

Initialisation (``weights_init``): every conv and transposed conv xavier-normal, every
BatchNorm weight N(1, 0.02) and bias 0; ``reinitialize_discriminator`` applies it to D
again (the reference's D re-initialisation when its loss collapses; Adam's state and the
BatchNorm running statistics are kept, as there).

Outputs. ``reconstruction`` [B, L, S] is G(x) on the sensors (the first S input
columns); ``extras['fake']`` is G(x) on every input column and ``extras['latent']`` the
latent [B, latent]. In training mode ``forward`` also runs D on x and on G(x), separately
(BatchNorm statistics per call, as the reference): ``d_real``, ``d_fake`` [B] and
``feat_real``, ``feat_fake``. In eval mode (scoring, validation) D is not run, and
BatchNorm uses its running statistics, so a window's score does not depend on the other
windows of its batch.

MADCluster embedding (BACKBONES.md, BeatGAN point 4): ``embedding=decoder`` (default, per
step) is the decoder's last hidden map [B, f, ⌊L/2⌋] upsampled to L steps by repeating
each step (nearest), [B, L, f]; ``embedding=latent`` is the per-window latent broadcast
to every step, [B, L, latent].
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput

EMBEDDINGS = ("decoder", "latent")
ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def stack_lengths(window: int, layers: int) -> list[int]:
    """The lengths before each k4 s2 p1 conv and after the last: [L, ⌊L/2⌋, ...]."""
    sizes = [window]
    for _ in range(layers):
        sizes.append((sizes[-1] + 2 - 4) // 2 + 1)
    return sizes


def weights_init(module: nn.Module) -> None:
    """The reference's init: convs xavier-normal; BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        nn.init.xavier_normal_(module.weight)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ConvEncoder(nn.Module):
    """``layers`` halving convs (LeakyReLU 0.2, BatchNorm from the second on), then one conv
    over the remaining length to ``out`` channels × 1 step."""

    def __init__(self, n_inputs: int, filters: int, layers: int, last_kernel: int, out: int):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = n_inputs
        for i in range(layers):
            c_out = filters * 2 ** i
            blocks.append(nn.Conv1d(c_in, c_out, 4, 2, 1, bias=False))
            if i > 0:
                blocks.append(nn.BatchNorm1d(c_out))
            blocks.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.last = nn.Conv1d(c_in, out, last_kernel, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.features(x)
        return self.last(feat), feat


class ConvDecoder(nn.Module):
    def __init__(self, latent: int, n_outputs: int, filters: int, layers: int, lengths: list[int], activation: str):
        super().__init__()
        self.lengths = lengths  # the encoder's lengths, [L, ..., k]
        c = filters * 2 ** (layers - 1)
        self.first = nn.Sequential(nn.ConvTranspose1d(latent, c, lengths[-1], 1, 0, bias=False),
                                   nn.BatchNorm1d(c), nn.ReLU(inplace=True))
        self.ups = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(layers - 1, 0, -1):
            self.ups.append(nn.ConvTranspose1d(filters * 2 ** i, filters * 2 ** (i - 1), 4, 2, 1, bias=False))
            self.norms.append(nn.Sequential(nn.BatchNorm1d(filters * 2 ** (i - 1)), nn.ReLU(inplace=True)))
        self.out = nn.ConvTranspose1d(filters, n_outputs, 4, 2, 1, bias=False)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output [B, C, L], the last hidden map [B, f, ⌊L/2⌋])."""
        h = self.first(z)
        for j, (up, norm) in enumerate(zip(self.ups, self.norms)):
            h = norm(up(h, output_size=[self.lengths[-2 - j]]))
        return self.activation(self.out(h, output_size=[self.lengths[0]])), h


class Generator(nn.Module):
    def __init__(self, n_inputs: int, filters: int, latent: int, layers: int, lengths: list[int], activation: str):
        super().__init__()
        self.encoder = ConvEncoder(n_inputs, filters, layers, lengths[-1], latent)
        self.decoder = ConvDecoder(latent, n_inputs, filters, layers, lengths, activation)

    def forward(self, x: torch.Tensor):
        z, _ = self.encoder(x)
        fake, hidden = self.decoder(z)
        return fake, z, hidden


class Discriminator(nn.Module):
    def __init__(self, n_inputs: int, filters: int, layers: int, lengths: list[int]):
        super().__init__()
        self.encoder = ConvEncoder(n_inputs, filters, layers, lengths[-1], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P(real) [B], features [B, f·2^(layers−1), k])."""
        logit, feat = self.encoder(x)
        return torch.sigmoid(logit).reshape(-1), feat


class BeatGAN(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, filters: int = 32, latent: int = 50,
                 layers: int = 5, out_activation: str = "tanh", embedding: str = "decoder"):
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise ConfigError(f"backbone.model.embedding={embedding!r}; expected one of {list(EMBEDDINGS)}")
        if out_activation not in ACTIVATIONS:
            raise ConfigError(f"backbone.model.out_activation={out_activation!r}; expected one of {list(ACTIVATIONS)}")
        for key, v in (("filters", filters), ("latent", latent), ("layers", layers)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"backbone.model.{key}={v}; expected an integer >= 1")
        if window < 2 ** layers:
            raise ConfigError(
                f"dataset.window={window} is shorter than BeatGAN's conv stack allows: its {layers} halving "
                f"convolutions (backbone.model.layers) need a window of at least {2 ** layers}")
        self.lengths = stack_lengths(window, layers)
        self.n_outputs, self.embedding = n_outputs, embedding
        self.generator = Generator(n_inputs, filters, latent, layers, self.lengths, out_activation)
        self.discriminator = Discriminator(n_inputs, filters, layers, self.lengths)
        self.apply(weights_init)

    def reinitialize_discriminator(self) -> None:
        self.discriminator.apply(weights_init)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        B, L, _ = x.shape
        xc = x.transpose(1, 2)
        fake_c, z, hidden = self.generator(xc)
        fake = fake_c.transpose(1, 2)
        latent = z[..., 0]
        extras = {"fake": fake, "latent": latent}
        if self.training:
            extras["d_real"], extras["feat_real"] = self.discriminator(xc)
            extras["d_fake"], extras["feat_fake"] = self.discriminator(fake_c)
        if self.embedding == "decoder":
            emb = F.interpolate(hidden, size=L, mode="nearest").transpose(1, 2)
        else:
            emb = latent[:, None, :].expand(B, L, latent.shape[1])
        return BackboneOutput(embedding=emb, reconstruction=fake[..., : self.n_outputs], extras=extras)
