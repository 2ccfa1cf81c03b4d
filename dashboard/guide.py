"""Guide page: each method and each metric with its formula, what healthy and collapsed look
like, and what to try (the declarations of ``core.metrics``, family by family). Every
chart's help text links to an anchor here."""

from __future__ import annotations

import streamlit as st

from core.metrics import FAMILIES, IMPORTED, IMPORTED_PREFIX, METRICS, family_names
from dashboard.glossary import DENSE_VIEWS, METHODS

# (kind, what you see, cause, what to try)
_COLLAPSES = (
    ("uniform", "teacher entropy on the ln K line, KL near 0, max prob near 1/K",
     "centering without enough sharpening: every image gets the same flat distribution",
     "lower `dino.teacher_temp`, freeze the last layer longer, `dino.koleo_weight=0.1`, smaller `dino.out_dim`"),
    ("one-hot", "teacher entropy near 0, batch entropy low, max prob near 1",
     "sharpening without centering: one prototype wins for every image", "`dino.centering=mean` or `sinkhorn`"),
    ("dimensional", "RankMe far below the width, a steep singular-value spectrum",
     "features use a few directions", "larger batch, KoLeo, lower learning rate"),
    ("latent (I-JEPA)", "target std and RankMe falling, loss near 0",
     "the target encoder follows the context encoder too closely", "keep `ijepa.ema=true`, `ijepa.reg=variance`"),
)

# The Guide's "Watch your own training": how runs of other trainers get here (sslscope.monitor)
_WATCH = """Runs of other trainers (the official DINO / DINOv2 / MAE / I-JEPA code, lightly, your
own Lightning module) show here too, with the same statistics, computed by the same code:

```python
from sslscope.monitor import Monitor
mon = Monitor("runs", name="my-dino", method="dino", config=vars(args), every=10)
mon.dino(step, teacher_out, student_out, loss=criterion, epoch=epoch)  # before the loss moves its centre
mon.scalars(step, {"train/loss": loss, "opt/lr": lr})
mon.close()
```

Statistics are computed only every `every` steps (other steps touch nothing, no GPU sync) and
only rank 0 writes under DDP. `mon.embeddings`, `mon.tokens` / `mon.vit_tokens`, `mon.mae`,
`mon.jepa`, `mon.probe` and `mon.checkpoint` log the rest; `sslscope.monitor.lightning.MonitorCallback`
watches a Lightning module; `examples/` holds lightly's DINO loop and the official `main_dino.py`
loop, watched. Logs you already have: `python -m sslscope.monitor import-log log.txt` (also
DINOv2's `training_metrics.json` and TensorBoard event files)."""


def render() -> None:
    st.title("Guide")
    st.caption("What each method does and what each chart means: the formula, what healthy and collapsed "
               "look like, and what to try.")
    st.header("Methods", anchor="methods", divider="gray")
    for name, summary, formula, watch in METHODS:
        st.subheader(name, anchor=name.lower().replace("-", ""))
        st.markdown(summary)
        st.latex(formula)
        st.markdown(f"**Watch:** {watch}")
    st.header("Collapse, in four kinds", anchor="collapse", divider="gray")
    table = ["| kind | what you see | cause | try |", "|---|---|---|---|"]
    table += [f"| **{k}** | {see} | {cause} | {fix} |" for k, see, cause, fix in _COLLAPSES]
    st.markdown("\n".join(table))
    st.header("Dense views", anchor="dense-views", divider="gray")
    st.caption("Shown under the probe on Live (DINO runs) and on Inspect > Dense features (any checkpoint).")
    for title, how, healthy in DENSE_VIEWS:
        st.subheader(title)
        st.markdown(f"{how}\n- **Healthy:** {healthy}")
    for family in FAMILIES:  # every declared metric belongs to one family
        st.header(f"Metrics: {family.title.lower()}", anchor=family.title.lower().replace(" ", "-"), divider="gray")
        st.caption(family.help.capitalize() + ". Names as in the run store (`metrics.sqlite`).")
        for name in family_names(family):
            _metric(name)
    st.header("Watch your own training", anchor="watch-your-own-training", divider="gray")
    st.markdown(_WATCH)
    st.markdown(f"**{IMPORTED.title} metrics** (`{IMPORTED_PREFIX}...`): {IMPORTED.help}. Names that mean ours "
                "(`train_loss`, `total_loss`, `lr`, `wd`, `mom`) are read as ours and drawn in their panels; the "
                "others keep the name the log gave them.")


def _metric(name: str) -> None:
    d = METRICS[name]
    st.subheader(d.title, anchor=d.anchor)  # the anchor every help link points at
    st.caption(f"`{d.name}`" + (f" · {d.unit}" if d.unit else "") + (f" · healthy {d.range_text}" if d.range_text
                                                                       else ""))
    if d.formula:
        st.latex(d.formula)
    lines = [d.meaning]
    if d.healthy:
        lines.append(f"- **Healthy:** {d.healthy}")
    if d.collapsed:
        lines.append(f"- **Collapsed:** {d.collapsed}")
    if d.try_:
        lines.append(f"- **Try:** {d.try_}")
    st.markdown("\n".join(lines))

