"""Science on CPU: after a short real DINO run on ``shapes``, the teacher's last-layer [CLS]
attention masks (60% of the mass, as in DINO) overlap the objects better than the same
backbone's at random initialisation. The reference is the mean over several random
initialisations: at init the attention is dominated by the positional embeddings, a fixed
pattern whose overlap with the objects varies a lot from seed to seed.

Measured (300 val images): trained 0.137 after 120 steps (0.152 after 200), random init mean
0.129 over 5 seeds (0.114 to 0.167). The margin is small: at this budget DINO barely learns
(k-NN stays near chance), so this checks the direction, not object discovery; a content-blind
centred mask of 60% of the patches scores 0.22 on the same images."""

import numpy as np
import pytest

from analysis.attention import attention_jaccard
from analysis.features import random_init_like
from trainer.config import Config
from trainer.data.datasets import build_dataset, normalize
from trainer.loading import load_encoder

RANDOM_SEEDS = 5
# a short run of the trainer's defaults, shrunk to fit the CI budget on 2 cores (the Jaccard
# of this setup plateaus by step ~50); the teacher temperature is pinned to the value measured
OVERRIDES = ["optim.steps=120", "optim.warmup_steps=12", "dino.freeze_last_layer_steps=12", "data.batch_size=32",
             "dino.n_local=2", "data.num_train=1000", "data.num_val=300", "data.num_workers=0",
             "model.preset=custom", "model.embed_dim=64", "model.depth=3", "model.num_heads=2",
             "dino.teacher_temp=0.04", "dino.warmup_teacher_temp=0.04", "run.eval_every=120", "run.ckpt_every=120"]


@pytest.mark.slow
def test_dino_attention_beats_random_init_on_object_masks(tmp_path):
    from trainer.loop import train

    cfg = Config().with_overrides(OVERRIDES + [f"run.runs_dir={tmp_path}", "run.name=dino-jaccard"])
    run = train(cfg)
    vit, cfg, _ = load_encoder(run)
    ds = build_dataset(cfg.data, "val", cfg.run.seed)
    x, masks = normalize(ds.images), ds.masks
    trained = attention_jaccard(vit, x, masks)
    random = [attention_jaccard(random_init_like(vit, s), x, masks).mean for s in range(RANDOM_SEEDS)]
    print(f"\nattention-mask Jaccard vs object masks on {len(x)} val images: trained {trained.mean:.3f} "
          f"(best head {trained.per_head.max():.3f}); random init mean {np.mean(random):.3f} "
          f"over {RANDOM_SEEDS} seeds ({min(random):.3f} to {max(random):.3f})")
    assert trained.mean > np.mean(random)
