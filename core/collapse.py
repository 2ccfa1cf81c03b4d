"""Collapse statistics on a batch of embeddings z (N, D): logged while training, and the same
functions judge a checkpoint in ``analysis.collapse``.

- ``std_l2``: std over the batch of l2-normalised z, averaged over dims, times sqrt(D)
  (SimSiam, Chen & He 2021): about 1 when the embeddings spread over the sphere, 0 when
  they all collapse to one point.
- ``rankme``: RankMe (Garrido et al. 2023), exp of the entropy of the normalised singular
  values: the effective rank, from 1 (dimensional collapse) to min(N, D).
- ``mean_cosine``: mean off-diagonal cosine similarity: near 0 spread out, near 1 collapsed.
- ``collapse_stats``: the three under their ``collapse/*`` names, built in this one place.
- ``high_norm_mask`` / ``high_norm_frac``: the outlier-token rule of ``tokens/high_norm_frac``;
- ``register_attn_share``: ``tokens/register_attn_share``, the attention mass on registers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core import metrics as M


@torch.no_grad()
def std_l2(z: torch.Tensor) -> torch.Tensor:
    """0-dim tensor: mean over dims of the batch std of l2-normalised rows, times sqrt(D)."""
    zn = F.normalize(z.float(), dim=-1)
    return zn.std(dim=0).mean() * zn.shape[-1] ** 0.5


@torch.no_grad()
def rankme(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """0-dim tensor: exp(-sum p_k log p_k), p = sigma / ||sigma||_1 (+eps), sigma the singular values."""
    s = torch.linalg.svdvals(z.float())
    p = s / (s.sum() + eps) + eps
    return torch.exp(-(p * p.log()).sum())


@torch.no_grad()
def mean_cosine(z: torch.Tensor) -> torch.Tensor:
    """0-dim tensor: mean cosine similarity over distinct pairs of rows."""
    zn = F.normalize(z.float(), dim=-1)
    n = zn.shape[0]
    sim = zn @ zn.T  # (N, N)
    return (sim.sum() - sim.diagonal().sum()) / max(n * (n - 1), 1)


@torch.no_grad()
def collapse_stats(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """``collapse/std_l2``, ``collapse/rankme`` and ``collapse/mean_cosine`` of embeddings z (N, D)."""
    return {M.COLLAPSE_STD_L2: std_l2(z), M.COLLAPSE_RANKME: rankme(z), M.COLLAPSE_MEAN_COSINE: mean_cosine(z)}


def high_norm_mask(norms: torch.Tensor, ratio: float = 2.0) -> torch.Tensor:
    """Bool (B, N): patch tokens whose norm exceeds ``ratio`` x their image's median patch norm
    (the high-norm outlier tokens of Darcet et al. 2024). ``norms``: (B, N) token norms."""
    return norms > ratio * norms.median(dim=1, keepdim=True).values


@torch.no_grad()
def high_norm_frac(tokens: torch.Tensor, ratio: float = 2.0) -> torch.Tensor:
    """0-dim tensor: the fraction of patch tokens (B, N, D) that ``high_norm_mask`` flags."""
    return high_norm_mask(tokens.float().norm(dim=-1), ratio).float().mean()


@torch.no_grad()
def register_attn_share(attn: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """0-dim tensor: the share of attention, averaged over images, heads and every query, that
    lands on the register tokens. ``attn``: (B, heads, L, L) rows summing to 1, tokens laid out
    as timm's ([CLS], registers, patches): registers are keys 1 .. ``num_prefix`` - 1."""
    return attn[..., 1:num_prefix].sum(-1).mean()
