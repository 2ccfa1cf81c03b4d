"""DINO projection head (Caron et al. 2021, Sec. 3.1 and Appendix).

MLP (Linear-GELU x2) -> bottleneck -> l2-normalise -> weight-normalised linear to K outputs.
With ``norm_last_layer`` the last layer's weight-norm gain is fixed to 1, i.e. each of the K
prototypes is a unit vector and the logits are cosine similarities (paper default, stabler).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        assert nlayers >= 1
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        for i in range(nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.norm_last_layer = norm_last_layer
        # weight_v of the weight-normalised last layer; its gain g is fixed to 1 (norm_last_layer)
        # or learnt (self.last_layer_g).
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)
        self.last_layer_g = nn.Parameter(torch.ones(out_dim), requires_grad=not norm_last_layer)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> logits (B, out_dim)."""
        z = F.normalize(self.mlp(x), dim=-1)  # (B, bottleneck) on the unit sphere
        w = F.normalize(self.last_layer.weight, dim=1) * self.last_layer_g[:, None]  # (K, bottleneck)
        return F.linear(z, w)
