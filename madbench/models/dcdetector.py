"""DCdetector (Yang et al., KDD 2023): dual attention over channel-independent patches
(BACKBONES.md, DCdetector; the reference code is DAMO-DI-ML/KDD2023-DCdetector
model/{DCdetector,attn,RevIN,embed}.py, and the MADCluster reference's copy is
SYLee1996/MADCluster MADCluster_MODEL.py).

Every channel of a window is its own univariate series (channel independence). For each
patch size p (the window L = N·p):

- **patch-wise tokens**: the N patches of p steps, each embedded by its own circular
  Conv1d(p → d, k3, no bias) + sinusoidal position + dropout;
- **in-patch tokens**: the p positions inside a patch, each a series of N steps (step
  ``s`` of every patch: x[s::p]), embedded by Conv1d(N → d, k3) + position + dropout.

Each of the ``layers`` attention layers has its own query and key projections, shared by
both views; the layers are not stacked (each reads the embeddings, as in the reference),
and no value path exists (the reference computes a value projection and never uses it).
A layer gives, per channel, the patch-wise map softmax(QKᵀ/√(d/H)) [N×N] and the in-patch
map [p×p], with attention dropout, averaged over channels. The reference then expands the
patch-wise map p×p (block repeat) and tiles the in-patch map N×N to [L×L]; both are linear,
so the channel mean is taken here on the small maps, and the expansion is left to the
objective, which never builds it (madbench/objectives/contrastive.py computes the KLs of
the expanded maps from the small ones).

Outputs: ``extras["patch_series"]`` (patch-wise maps, [B, H, N, N]) and ``extras["patch_prior"]``
(in-patch maps, [B, H, p, p]), one per (patch size, layer), patch sizes outer — the
reference's order; and ``embedding`` [B, L, d] for MADCluster:

- default: the patch-wise token embeddings (what every attention layer reads, and what the
  DCdetector loss trains through the queries and keys), channel mean, each patch's
  embedding given to its p steps, averaged over the patch sizes;
- ``reference_quirks=true``: MADCluster's ``x_ori``, a window embedding
  (Conv1d(C → d, k3, circular, no bias) + position + dropout over the whole window), which
  feeds only the reference's unused value projection: no DCdetector loss reaches it, and
  the attention never sees it.

Corrected by default, reproduced by ``reference_quirks=true`` (the MADCluster reference
model): RevIN per window (DCdetector; MADCluster drops it), dropout 0 (DCdetector;
MADCluster 0.1), PyTorch's default Linear init (MADCluster: He-normal, bias 0), in-patch
tokens x[s::p] (the paper's Fig. 2 and the position the tiled map gives them; the code
takes contiguous chunks x[r·N:(r+1)·N] instead, issue #10), and the embedding above.
``revin`` and ``dropout`` may also be set on their own.

Cost (BACKBONES.md point 6): in the reference the query/key projections of every token
dominate, with the [L×L] maps. Here, with no dropout on an embedding (the default, and
every evaluation pass), a token's embedding is A·z_t + π_t, with z_t its circular
neighbours [x_{t−1}, x_t, x_{t+1}] (3·c_in values) and A the convolution: the scores
e_i M e_j + v·e_j (M = W_qᵀW_k, v = b_q·W_k per head; the terms that are constant along a
row, which the softmax over keys cancels, are left out, and with them the key bias) are
computed in the 3·c_in-wide space of z wherever it is narrower than d, as two batched
products accumulated onto a batch-independent term, with 1/√E folded into W_q: each
[B·C, H, T, T] score map is written by the first and updated in place by the second
(one head), and training keeps only z and the maps for the backward pass. Otherwise (dropout
on the embeddings while training, as the MADCluster reference has) with one head the query
and key are merged into one d×d product, G = E·M + v, scores = G·Eᵀ, and ``recompute=true``
recomputes each layer's maps in the backward pass (torch.utils.checkpoint), 32 windows at a
time, instead of keeping its [B·C, N, d] products. Each path is tested against the reference's computation.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput
from madbench.models.deepsvdd import sinusoidal_encoding

REVIN_EPS = 1e-5  # RevIN.py: the variance gets 1e-5 inside the square root
RECOMPUTE_WINDOWS = 32  # recompute=true: windows per recomputed group


class TokenEmbedding(nn.Module):
    """DataEmbedding of the reference (embed.py): circular Conv1d(c_in → d, k3, no bias,
    Kaiming-normal leaky-relu init) over the token axis + fixed sinusoidal position + dropout."""

    def __init__(self, c_in: int, d_model: int, n_tokens: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.register_buffer("pe", sinusoidal_encoding(n_tokens, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # [B', T, c_in] -> [B', T, d]
        return self.dropout(self.conv(x.transpose(1, 2)).transpose(1, 2) + self.pe)

    @staticmethod
    def neighbours(x: torch.Tensor) -> torch.Tensor:
        """z_t = [x_{t−1}, x_t, x_{t+1}] (circular): [B', T, c_in] → [B', T, 3·c_in], so that the
        embedding is z_t·Aᵀ + pe_t with A = :meth:`matrix`."""
        return torch.cat([x.roll(1, dims=1), x, x.roll(-1, dims=1)], dim=-1)

    def matrix(self) -> torch.Tensor:
        """The convolution as a [d, 3·c_in] matrix (kernel tap outer, channel inner)."""
        w = self.conv.weight
        return w.permute(0, 2, 1).reshape(w.shape[0], -1)

    def composable(self) -> bool:
        """Whether the attention can be computed from the narrow z instead of the embedding:
        no dropout acts on the embedding, and z is narrower than d."""
        return not (self.training and self.dropout.p > 0) and 3 * self.conv.in_channels < self.conv.out_channels


class DualAttention(nn.Module):
    """One attention layer: query/key projections shared by the two views; returns the
    channel-mean attention maps of each view."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, recompute: bool):
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model, bias=False)  # a key bias only shifts each score row
        self.n_heads, self.recompute = n_heads, recompute
        self.scale = (d_model // n_heads) ** -0.5            # 1/√E, E = d/H (attn.py)
        self.dropout = nn.Dropout(dropout)

    def bilinear(self):
        """Per head, M = W_qᵀW_k/√E [H, d, d] and v = b_q·W_k/√E [H, d]: the scaled scores
        (e W_qᵀ + b_q)(e W_kᵀ)ᵀ/√E are e·M·eᵀ + v·eᵀ (the terms constant along a row, which
        the softmax cancels, left out). The scale sits on the small W_q, never on a map."""
        h, d = self.n_heads, self.query.in_features
        wq, wk = self.query.weight.view(h, -1, d) * self.scale, self.key.weight.view(h, -1, d)
        return wq.transpose(1, 2) @ wk, (self.query.bias.view(h, 1, -1) * self.scale @ wk).squeeze(1)

    def logits(self, view) -> torch.Tensor:
        """Scaled scores [B', H, T, T] of one view: ``(embedding module, tokens, composed)``."""
        emb, x, composed = view
        n, t = x.shape[:2]
        if composed:
            # e_t = A z_t + π_t: e_i M e_j + v e_j = (z_i K + R_i) z_j + z_i U_j + C_ij with K, R, U,
            # C from the weights alone. Two batched products onto the batch-independent C: the
            # map is written by the first and accumulated in place by the second, and neither
            # keeps more than z (which the view holds anyway) for the backward pass: z needs
            # no gradient, so the products with it save nothing of their other factor
            m, v = self.bilinear()
            a, pe = emb.matrix(), emb.pe[0]                 # [d, 3c], [T, d]
            row = pe @ m + v[:, None]                        # [H, T, d]: π_i M + v
            k = a.t() @ m @ a                                # [H, 3c, 3c]
            u = a.t() @ m @ pe.t()                           # [H, 3c, T]
            const = row @ pe.t()                             # [H, T, T]
            left = x[:, None] @ k + row @ a                  # [B', H, T, 3c]: z_i K + R_i
            if self.n_heads == 1:
                scores = torch.baddbmm(const, x, u.expand(n, -1, -1))       # z_i U_j + C_ij
                lt, zt = left[:, 0].to(scores.dtype), x.transpose(1, 2).to(scores.dtype)   # autocast: in its dtype
                return scores.baddbmm_(lt, zt).unsqueeze(1)
            z = x[:, None]
            return left @ z.transpose(-1, -2) + (z @ u + const)
        d = x.shape[-1]
        if self.n_heads == 1:   # one d×d product instead of two
            m, v = self.bilinear()
            g = torch.addmm(v, x.reshape(-1, d), m[0]).view(n, t, d)
            return torch.bmm(g, x.transpose(1, 2)).unsqueeze(1)
        q = self.query(x).view(n, t, self.n_heads, -1).transpose(1, 2) * self.scale
        k = self.key(x).view(n, t, self.n_heads, -1).transpose(1, 2)
        return q @ k.transpose(-1, -2)

    def attention(self, view) -> torch.Tensor:
        """softmax over keys with attention dropout: [B', H, T, T]."""
        return self.dropout(torch.softmax(self.logits(view), dim=-1))

    def maps(self, patch, inpatch, n_batch: int):
        s, p = self.attention(patch), self.attention(inpatch)
        return s.view(n_batch, -1, *s.shape[1:]).mean(1), p.view(n_batch, -1, *p.shape[1:]).mean(1)

    def forward(self, patch, inpatch, n_batch: int):
        wide = not (patch[2] and inpatch[2])
        if not (self.recompute and wide and torch.is_grad_enabled()):
            return self.maps(patch, inpatch, n_batch)
        # recomputed in backward, RECOMPUTE_WINDOWS windows at a time, so that only one group's
        # [rows, N, d] products exist at once
        rows = patch[1].shape[0] // n_batch
        parts = []
        for w0 in range(0, n_batch, RECOMPUTE_WINDOWS):
            w1 = min(w0 + RECOMPUTE_WINDOWS, n_batch)
            sl = slice(w0 * rows, w1 * rows)
            parts.append(checkpoint(self.maps, (patch[0], patch[1][sl], patch[2]),
                                    (inpatch[0], inpatch[1][sl], inpatch[2]), w1 - w0, use_reentrant=False))
        return tuple(torch.cat(x) for x in zip(*parts))


def he_init_linear(module: nn.Module) -> None:
    """MADCluster_UTILS.he_init_normal on Linear layers: Kaiming-normal (relu, fan_in), bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DCdetector(nn.Module):
    #: compute the attention from the embeddings' narrow inputs where that is exact (tests turn it off)
    compose = True

    def __init__(self, n_inputs: int, n_outputs: int, window: int, d_model: int = 256, n_heads: int = 1,
                 layers: int = 3, patch_sizes=(2, 5, 10), dropout: float | None = None, revin: bool | None = None,
                 recompute: bool = True, reference_quirks: bool = False):
        super().__init__()
        patch_sizes = [patch_sizes] if isinstance(patch_sizes, (int, str)) else list(patch_sizes)
        if not patch_sizes or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in patch_sizes):
            raise ConfigError(f"backbone.model.patch_sizes={patch_sizes}; expected a non-empty list of integers >= 1")
        for p in patch_sizes:
            if window % p:
                raise ConfigError(f"backbone.model.patch_sizes={patch_sizes}: {p} does not divide the window "
                                  f"(dataset.window={window})")
        if not isinstance(n_heads, int) or n_heads < 1 or d_model % n_heads:
            raise ConfigError(f"backbone.model.n_heads={n_heads} does not divide backbone.model.d_model={d_model}")
        if not isinstance(layers, int) or layers < 1:
            raise ConfigError(f"backbone.model.layers={layers}; expected an integer >= 1")
        self.reference_quirks = bool(reference_quirks)
        dropout = (0.1 if self.reference_quirks else 0.0) if dropout is None else float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"backbone.model.dropout={dropout}; expected a value in [0, 1)")
        self.revin = (not self.reference_quirks) if revin is None else bool(revin)
        self.window, self.patch_sizes, self.d_model = window, patch_sizes, d_model
        self.patch_embed = nn.ModuleList(TokenEmbedding(p, d_model, window // p, dropout) for p in patch_sizes)
        self.inpatch_embed = nn.ModuleList(TokenEmbedding(window // p, d_model, p, dropout) for p in patch_sizes)
        self.layers = nn.ModuleList(DualAttention(d_model, n_heads, dropout, recompute) for _ in range(layers))
        # MADCluster's x_ori: only the reference's head reads it
        self.window_embed = TokenEmbedding(n_inputs, d_model, window, dropout) if self.reference_quirks else None
        if self.reference_quirks:
            self.apply(he_init_linear)

    def inpatch_tokens(self, xc: torch.Tensor, p: int) -> torch.Tensor:
        """[B·C, L] → the p in-patch tokens [B·C, p, N]: x[s::p] (the paper), or the
        reference's contiguous chunks x[r·N:(r+1)·N] under ``reference_quirks``."""
        n = self.window // p
        if self.reference_quirks:
            return xc.reshape(-1, p, n)
        return xc.reshape(-1, n, p).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        b, length, c = x.shape
        if length != self.window:
            raise ValueError(f"DCdetector was built for windows of {self.window} steps; got {length}")
        if self.revin:  # per window and channel, statistics without gradient (RevIN.py, affine = identity)
            mean = x.mean(1, keepdim=True).detach()
            std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + REVIN_EPS).detach()
            x = (x - mean) / std
        xc = x.transpose(1, 2).reshape(b * c, length)        # channel-independent series
        series, prior, steps = [], [], []
        for i, p in enumerate(self.patch_sizes):
            patch = self.view(self.patch_embed[i], xc.reshape(-1, length // p, p))     # N tokens of p steps
            inpatch = self.view(self.inpatch_embed[i], self.inpatch_tokens(xc, p))    # p tokens of N steps
            for layer in self.layers:
                s, q = layer(patch, inpatch, b)
                series.append(s)
                prior.append(q)
            if not self.reference_quirks:   # channel mean of the patch-wise embeddings, on the patch's p steps
                emb, tokens, composed = patch
                mean = tokens.view(b, c, *tokens.shape[1:]).mean(1)
                e = mean @ emb.matrix().t() + emb.pe if composed else mean
                steps.append(e.repeat_interleave(p, dim=1))
        if self.reference_quirks:
            embedding = self.window_embed(x)
        else:
            embedding = torch.stack(steps).mean(0) if len(steps) > 1 else steps[0]
        return BackboneOutput(embedding=embedding, extras={"patch_series": series, "patch_prior": prior})

    def view(self, emb: TokenEmbedding, tokens: torch.Tensor):
        """``(emb, z, True)`` when the attention can be computed from the narrow neighbour
        features z (no dropout on the embedding, 3·c_in < d), else ``(emb, embedding, False)``."""
        if self.compose and emb.composable():
            return emb, emb.neighbours(tokens), True
        return emb, emb(tokens), False
