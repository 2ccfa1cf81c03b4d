"""SSLScope's collapse monitors for any training loop: ``Monitor`` writes the statistics our
own trainer logs (DINO teacher entropy against ln K, KL, RankMe, high-norm tokens, MAE's masked
PSNR, I-JEPA's target spread, probes, checkpoints) into a run of the SSLScope store, which the
dashboard watches like its own runs.

    from sslscope.monitor import Monitor, loss_params

Adapters: ``sslscope.monitor.lightning.MonitorCallback`` (PyTorch Lightning, imported only
there), ``loss_params`` (lightly's, the official and our DINO loss); examples in
``examples/``. ``python -m sslscope.monitor import-log PATH`` reads the official DINO /
DINOv2 JSON-lines logs and TensorBoard event files into a run.
"""

from sslscope.monitor.losses import loss_params
from sslscope.monitor.monitor import Monitor
from sslscope.monitor.names import our_name
from sslscope.monitor.process import flat_config, process_rank

__all__ = ["Monitor", "flat_config", "loss_params", "our_name", "process_rank"]
