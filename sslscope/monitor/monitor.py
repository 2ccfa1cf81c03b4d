"""``Monitor``: SSLScope's collapse statistics for a training loop SSLScope did not write.

    from sslscope.monitor import Monitor
    mon = Monitor("runs", name="my-dino", method="dino", config=vars(args))   # creates the run
    for step, batch in enumerate(loader, 1):
        ...
        mon.dino(step, teacher_out, student_out, center=loss_fn.center, teacher_temp=tt, student_temp=0.1)
        loss = loss_fn(...)                                                  # (moves the centre)
        mon.scalars(step, {"train/loss": loss, "opt/lr": lr})
    mon.close()

Each call names the step; statistics are computed and written only on steps divisible by
``every`` (``due(step)``): on any other step a call returns before touching its tensors, so it
costs no computation and no device sync. On a logged step the numbers are computed on the
tensors' device by the functions our own methods log with (``core.dino_stats``,
``core.collapse``, ``core.patches``, ``core.latent``) and copied to the host in one transfer.

Rows go through ``trainer.store.RunWriter``, so the dashboard lists and watches the run as one
of its own. Under ``torch.distributed`` only rank 0 writes; on other ranks every call is a no-op
(statistics are of rank 0's share of the batch; no collective is entered). A monitor never
stops the training it watches: when the store can no longer be written (a full disk) it says so
once on stderr and stops logging.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import metrics as M
from core.collapse import collapse_stats, high_norm_frac, register_attn_share
from core.dino_stats import CENTERINGS, dino_cross_entropy, dino_stats, teacher_distribution, updated_center
from core.latent import JEPA_LOSSES, jepa_loss, jepa_stats
from core.patches import masked_mse, patchify, psnr_masked, psnr_masked_patches, unnormalize_patches
from core.probes import LAYOUT_KEY, layout_array
from sslscope.monitor.losses import loss_params
from sslscope.monitor.names import our_name
from sslscope.monitor.probes import probe_arrays
from sslscope.monitor.process import flat_config, process_rank
from trainer.store import RunWriter, StoreError, check_runs_root, default_runs_dir

Tensors = torch.Tensor | Sequence[torch.Tensor]
CONFIG_SECTION = "external"  # run.json config section holding the watched trainer's own config
MONITOR_SECTION = "monitor"  # run.json config section holding the monitor's settings


@contextlib.contextmanager
def _exact():
    """No autograd and full precision for the statistics, whether or not the caller runs under
    autocast (a bf16 matmul would round the cosines and the KL)."""
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


def _views(x: Tensors, n: int | None = None, batch: int | None = None) -> list[torch.Tensor]:
    """Per-view (B, K) tensors from a list of them, or from one (V * B, K) tensor cut into ``n``
    views or into views of ``batch`` rows (the official DINO passes concatenated crops)."""
    if isinstance(x, torch.Tensor):
        if x.ndim != 2:
            raise ValueError(f"expected (views x batch, K) logits, got shape {tuple(x.shape)}")
        if n is not None:
            if x.shape[0] % n:
                raise ValueError(f"{x.shape[0]} rows do not split into {n} views of one batch size")
            return list(x.chunk(n))
        assert batch is not None
        if x.shape[0] % batch:
            raise ValueError(f"{x.shape[0]} student rows are not whole views of the teacher's batch of {batch}")
        return list(x.split(batch))
    views = list(x)
    if not views or any(v.ndim != 2 for v in views):
        raise ValueError("expected one (B, K) tensor per view")
    return views


class Monitor:
    """Writes one run of the SSLScope store from another trainer's loop (see the module doc).

    ``runs_dir``: the runs directory (None: ``$SSLSCOPE_RUNS`` or ``runs``); ``name``: the run's
    folder; ``method``: "dino", "mae", "ijepa" (what the dashboard groups and draws by);
    ``config``: the trainer's own settings, stored under ``external.*`` of run.json; ``every``:
    statistics every N steps; ``steps_per_epoch``: fills the epoch axis; ``resume``: continue
    an existing run (rows from the first step logged on are replaced); ``rank``: this process's
    rank (default :func:`process_rank`): only rank 0 writes. Under DDP build it after
    ``init_process_group`` (or under torchrun / SLURM, which set the rank's variable), or pass
    ``rank=``: processes that all read as rank 0 would race for the run's folder.
    """

    def __init__(self, runs_dir: str | Path | None, name: str, method: str = "dino", config: Any = None, *,
                 every: int = 10, group: str = "", steps_per_epoch: int | None = None, resume: bool = False,
                 rank: int | None = None):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r}: statistics are logged every N steps, N a whole number >= 1")
        if not name or not isinstance(name, str) or "/" in name or name.startswith(".") or len(name) > 100:
            raise ValueError(f"run name {name!r} must be a folder name (no '/', not starting with '.', "
                             "at most 100 characters)")
        self.every = every
        self.steps_per_epoch = steps_per_epoch
        self.rank = process_rank() if rank is None else rank
        self.writer: RunWriter | None = None
        self._cut_from_first: bool = False
        self._pid = os.getpid()  # a forked child that exits must not close the parent's run
        if self.rank != 0:
            return  # other ranks: every call is a no-op
        root = check_runs_root(Path(runs_dir) if runs_dir is not None else default_runs_dir())
        run_dir = root / name
        if (run_dir / "run.json").exists() and not resume:
            raise StoreError(f"run '{run_dir}' already exists; pick another name, or pass resume=True to continue it")
        if resume and (run_dir / "run.json").exists():
            self.writer = RunWriter.reopen(run_dir)
            self._cut_from_first = True  # the resumed timeline replaces what was logged from its first step on
        else:
            settings = {"every": every, "steps_per_epoch": steps_per_epoch}
            self.writer = RunWriter.create(root, name, {MONITOR_SECTION: settings, CONFIG_SECTION: flat_config(config)},
                                           method, group)
        atexit.register(self._at_exit)

    # --- when -----------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path | None:
        """The run folder (None on ranks other than 0)."""
        return self.writer.dir if self.writer is not None else None

    def due(self, step: int) -> bool:
        """Whether statistics of ``step`` are logged: this process writes and ``step % every == 0``."""
        return self.writer is not None and step % self.every == 0

    # --- statistics -----------------------------------------------------------------------
    @_exact()
    def dino(self, step: int, teacher_logits: Tensors, student_logits: Tensors, *, loss: Any = None,
             epoch: int | None = None, teacher_temp: float | None = None, student_temp: float | None = None,
             center: torch.Tensor | None = None, centering: str | None = None, center_momentum: float | None = None,
             teacher_probs: Tensors | None = None, n_global: int = 2, sinkhorn_iters: int = 3) -> None:
        """DINO's ``dino/*`` statistics: teacher entropy (vs ln K), batch entropy, KL(teacher ||
        student) over pairs of different views, max probability, top-10% mass, cross-entropy,
        tau_t and centre norm.

        ``teacher_logits``: the teacher head's output per global view (B, K), or all global views
        concatenated (``n_global`` * B, K) as the official DINO passes them; ``student_logits``:
        every view, globals first, per view or concatenated. ``center`` (any shape holding K
        values): the centre *before* this step's loss moves it, so call this before the loss
        (or pass a copy); ``center_momentum`` makes the logged centre norm the moved centre's,
        as our trainer logs it. ``centering``: "mean" (default with a centre), "none" (default
        without), "sinkhorn" (DINOv2's Sinkhorn-Knopp on this batch); ``teacher_probs``: the
        teacher targets the trainer computed itself (per view or concatenated), used as given.
        ``loss``: a DINO loss object of lightly, the official DINO or SSLScope, whose centre,
        temperatures (tau_t at ``epoch``) and momentum fill whatever is not passed
        (``losses.loss_params``); tau_s defaults to 0.1 without one.
        """
        if not self.due(step):
            return
        given = {"teacher_temp": teacher_temp, "student_temp": student_temp, "center": center,
                 "centering": centering, "center_momentum": center_momentum}
        if loss is not None:
            given = {**loss_params(loss, epoch=epoch, step=step), **{k: v for k, v in given.items() if v is not None}}
        teacher_temp, center, centering = given.get("teacher_temp"), given.get("center"), given.get("centering")
        student_temp = 0.1 if given.get("student_temp") is None else given["student_temp"]
        center_momentum = given.get("center_momentum")
        if teacher_temp is None:
            raise ValueError("Monitor.dino needs the teacher temperature: pass teacher_temp= (or loss= and epoch=)")
        t = _views(teacher_logits, n=n_global)
        s = _views(student_logits, batch=t[0].shape[0])
        c = center.detach().reshape(1, -1).float() if center is not None else None
        mode = centering or ("mean" if c is not None else "none")
        if mode not in CENTERINGS:
            raise ValueError(f"centering '{mode}' is not one of {', '.join(CENTERINGS)}")
        tau_t, tau_s = float(teacher_temp), float(student_temp)
        if teacher_probs is not None:
            probs = [p.float() for p in _views(teacher_probs, n=len(t))]
        elif mode == "mean" and c is None:
            raise ValueError("centering='mean' needs the centre: pass center=<the loss's center>")
        else:
            probs = teacher_distribution(t, tau_t, mode, c, sinkhorn_iters, distributed=False)
        ce = dino_cross_entropy(probs, s, tau_s)
        if c is not None and mode == "mean" and center_momentum is not None:
            c = updated_center(c, torch.cat(t).float(), center_momentum, distributed=False)
        self._log(step, dino_stats(ce, tau_t, c, probs, s, tau_s))

    @_exact()
    def embeddings(self, step: int, z: torch.Tensor) -> None:
        """``collapse/std_l2``, ``collapse/rankme``, ``collapse/mean_cosine`` of image
        embeddings ``z`` (N, D), e.g. the teacher's [CLS] of one global view."""
        if not self.due(step):
            return
        if z.ndim != 2 or z.shape[0] < 2:
            raise ValueError(f"embeddings must be (N, D) with N >= 2, got shape {tuple(z.shape)}")
        self._log(step, collapse_stats(z.detach()))

    @_exact()
    def tokens(self, step: int, patch_tokens: torch.Tensor, attn: torch.Tensor | None = None,
               num_registers: int = 0) -> None:
        """``tokens/high_norm_frac`` of patch tokens (B, N, D) (norm above twice the image's
        median); with the last block's attention ``attn`` (B, heads, L, L), tokens laid out
        [CLS], ``num_registers`` registers, patches, also ``tokens/register_attn_share``."""
        if not self.due(step):
            return
        self._log(step, self._token_stats(patch_tokens, attn, num_registers))

    @staticmethod
    def _token_stats(patch_tokens: torch.Tensor, attn: torch.Tensor | None,
                     num_registers: int) -> dict[str, torch.Tensor | float]:
        if patch_tokens.ndim != 3:
            raise ValueError(f"patch tokens must be (B, N, D), got shape {tuple(patch_tokens.shape)}")
        stats: dict[str, torch.Tensor | float] = {M.TOKENS_HIGH_NORM_FRAC: high_norm_frac(patch_tokens.detach())}
        if attn is not None and num_registers > 0:
            if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
                raise ValueError(f"attention must be (B, heads, L, L), got shape {tuple(attn.shape)}")
            stats[M.TOKENS_REGISTER_ATTN_SHARE] = register_attn_share(attn.detach().float(), 1 + num_registers)
        return stats

    @_exact()
    def vit_tokens(self, step: int, tokens: torch.Tensor, num_registers: int = 0,
                   attn: torch.Tensor | None = None) -> None:
        """A ViT's final tokens (B, 1 + R + N, D), laid out [CLS], ``num_registers`` R, patches
        (timm's and DINO's ``forward_features``): :meth:`embeddings` of the [CLS] tokens and
        :meth:`tokens` of the patch tokens, in one write."""
        if not self.due(step):
            return
        if tokens.ndim != 3 or tokens.shape[1] < 3 + num_registers:
            raise ValueError(f"ViT tokens must be (B, 1 + registers + patches, D), got shape {tuple(tokens.shape)}")
        stats = dict(collapse_stats(tokens[:, 0].detach()))
        stats.update(self._token_stats(tokens[:, 1 + num_registers:], attn, num_registers))
        self._log(step, stats)

    @_exact()
    def mae(self, step: int, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
            images: torch.Tensor | None = None, norm_pix_loss: bool = False) -> None:
        """``mae/loss`` (MSE on the removed patches) and ``mae/psnr_masked`` of MAE's prediction
        ``pred`` and ``target`` (B, L, p*p*3), ``mask`` (B, L) 1 = removed. The PSNR needs
        pixels: the target itself (ImageNet-normalised patches), or with ``norm_pix_loss`` the
        normalised ``images`` (B, 3, H, W) to map the prediction back."""
        if not self.due(step):
            return
        if pred.shape != target.shape or pred.ndim != 3 or mask.shape != pred.shape[:2]:
            raise ValueError(f"MAE needs pred and target (B, L, p*p*3) and mask (B, L); got {tuple(pred.shape)}, "
                             f"{tuple(target.shape)}, {tuple(mask.shape)}")
        pred, target, mask = pred.detach().float(), target.detach().float(), mask.detach().float()
        stats: dict[str, torch.Tensor | float] = {M.MAE_LOSS: masked_mse(pred, target, mask)}
        if not norm_pix_loss:
            stats[M.MAE_PSNR_MASKED] = psnr_masked_patches(pred, target, mask)
        elif images is not None:
            p = math.isqrt(pred.shape[-1] // 3)
            pixels = unnormalize_patches(pred, patchify(images.detach().float(), p))
            stats[M.MAE_PSNR_MASKED] = psnr_masked(pixels, images.detach(), mask, p)
        self._log(step, stats)

    @_exact()
    def jepa(self, step: int, pred: torch.Tensor, target: torch.Tensor, loss: str = "smooth_l1") -> None:
        """``ijepa/loss`` (``loss``: "smooth_l1" as the official code, or "l2"),
        ``ijepa/target_std`` and ``ijepa/pred_std`` of predicted and target features (..., D)."""
        if not self.due(step):
            return
        if loss not in JEPA_LOSSES:
            raise ValueError(f"loss '{loss}' is not one of {', '.join(JEPA_LOSSES)}")
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        stats: dict[str, torch.Tensor | float] = {
            M.IJEPA_LOSS: jepa_loss(pred.detach().float(), target.detach().float(), loss)}
        stats.update(jepa_stats(pred, target))
        self._log(step, stats)

    def scalars(self, step: int, values: Mapping[str, Any], *, force: bool = False) -> None:
        """Any numbers (floats or 0-d tensors) under SSLScope's names (``train/loss``,
        ``opt/lr``, ...; known aliases such as ``loss`` or ``lr`` are mapped, other names kept as
        given). Logged on due steps, or whenever ``force`` is set (e.g. an epoch's k-NN)."""
        if self.writer is None or not (force or self.due(step)):
            return
        self._log(step, {our_name(k, imported=False): v for k, v in values.items() if v is not None})

    # --- pictures and weights -------------------------------------------------------------
    def probe(self, step: int, images: torch.Tensor | np.ndarray, *, attention: torch.Tensor | None = None,
              reconstruction: torch.Tensor | np.ndarray | None = None, mask: torch.Tensor | None = None,
              embeddings: torch.Tensor | None = None) -> None:
        """Save a probe that the Live page draws: ``images`` (P, 3, H, W) normalised or (P, H, W,
        3) uint8; ``attention`` [CLS] maps (P, heads, h, w) or (P, h, w); ``reconstruction`` as
        the images; ``mask`` (P, h, w) 1 = removed; ``embeddings`` (P, D). Saved whenever called."""
        if self.writer is None:
            return
        layout, arrays = probe_arrays(images, attention, reconstruction, mask, embeddings)
        self._write(lambda w: w.save_probe(step, {**arrays, LAYOUT_KEY: layout_array(layout)}), step)

    def checkpoint(self, step: int, state_dict: Mapping[str, Any], *, prefix: str = "") -> None:
        """Save the tensors of ``state_dict`` as a safetensors checkpoint of the run (any other
        entries are left out); ``prefix``: the state-dict prefix of the backbone, for analysis."""
        if self.writer is None:
            return
        tensors = {k: v.detach().cpu().clone() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
        meta = {"encoder_prefix": prefix, "source": "sslscope.monitor"}
        self._write(lambda w: (w.save_checkpoint(step, tensors, meta), w.set_progress(step)), step)

    # --- the end --------------------------------------------------------------------------
    def close(self, status: str = "finished", reason: str = "") -> None:
        """Record the run's final status ("finished", "failed", "stopped") and release it."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        atexit.unregister(self._at_exit)
        try:
            writer.set_status(status, reason)
        except StoreError as e:
            print(f"warning: sslscope monitor could not record the end of '{writer.dir}': {e}", file=sys.stderr)
        finally:
            writer.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if kind is None:
            self.close("finished")
        elif issubclass(kind, KeyboardInterrupt):
            self.close("stopped", "interrupted (Ctrl-C)")
        else:
            self.close("failed", f"{kind.__name__}: {exc}"[:500])

    def _at_exit(self) -> None:
        if os.getpid() == self._pid:
            self.close("stopped", "the process ended without Monitor.close()")

    # --- writing --------------------------------------------------------------------------
    def _log(self, step: int, stats: Mapping[str, torch.Tensor | float]) -> None:
        values = _floats(stats)
        epoch = step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        self._write(lambda w: w.log_scalars(step, epoch, values), step)

    def _write(self, fn, step: int | None = None) -> None:
        """Run one store write of ``step``; after a resume the first one cuts what the abandoned
        timeline wrote from ``step`` on. A store that fails is said once and logging stops."""
        w = self.writer
        if w is None:
            return
        try:
            if self._cut_from_first and step is not None:
                w.truncate_after(step - 1)
                self._cut_from_first = False
            fn(w)
        except StoreError as e:
            print(f"warning: sslscope monitor stops logging to '{w.dir}': {e}", file=sys.stderr)
            self.close("failed", str(e))


def _floats(stats: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """Python floats of 0-d tensors and numbers, with one device-to-host copy per device."""
    out: dict[str, float] = {}
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for k, v in stats.items():
        if isinstance(v, torch.Tensor):
            by_device.setdefault(v.device, []).append((k, v.detach().reshape(())))
        elif isinstance(v, int | float | np.number):
            out[k] = float(v)
        else:
            raise ValueError(f"the value of '{k}' is {v!r:.60}, not a number or a 0-d tensor")
    for device, items in by_device.items():
        dtype = torch.float32 if device.type == "mps" else torch.float64  # exact for float32 values
        values = torch.stack([v.to(dtype) for _, v in items]).tolist()
        out.update({k: x for (k, _), x in zip(items, values)})
    return {k: out[k] for k in stats}  # the caller's order
