"""The leaf layer: maths and declarations that the trainer, analysis and the dashboard share.

Imports only torch, numpy and timm (never ``trainer``, ``analysis`` or ``dashboard``;
``tests/test_layers.py`` enforces it), so a number computed while training and the same
number computed from a checkpoint come from one function:

- ``collapse``: std_l2, RankMe, mean cosine, high-norm tokens, the ``collapse/*`` dict;
- ``knn``: DINO's weighted k-NN;
- ``koleo``: the KoLeo regulariser;
- ``dino_stats``: DINO's teacher distribution (centred softmax, Sinkhorn-Knopp), cross-entropy,
  centre update and the ``dino/*`` dict;
- ``patches``: patchify, MAE's masked MSE and masked PSNR;
- ``latent``: I-JEPA's latent loss and the ``ijepa/*_std`` spread;
- ``images``: ImageNet normalisation and its inverse;
- ``vit`` and ``features``: token embedding and the image-level features ([CLS], pooled);
- ``eval_mode``: run a module in eval mode and restore its mode;
- ``metrics``: every logged metric name with unit, family, healthy range and Guide text;
- ``probes``: the probe-layout declarations (name, kind, shape) charts draw by.
"""
