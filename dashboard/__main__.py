"""``python -m dashboard [streamlit options]`` (or ``python <repo>/dashboard`` from any folder):
the dashboard, bound to 127.0.0.1 wherever it is started.

``streamlit run streamlit_app.py`` reads ``.streamlit/config.toml`` from the current folder
only, so started anywhere else it listens on every network interface, and this dashboard can
start and stop training processes. The launcher passes the repository's config.toml to
Streamlit as flags, so the same settings (loopback address first) hold wherever it is started
and whatever the Streamlit version (only releases since 2025 also read a config.toml next to
the script); options given on the command line (or ``STREAMLIT_SERVER_ADDRESS``) win, and an
address other than loopback gets a warning.
Runs are read from ``$SSLSCOPE_RUNS`` or ``runs/`` under the current folder, as the trainer
writes them.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python /path/to/sslscope/dashboard): find the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.binding import exposure_warning  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
CONFIG = REPO / ".streamlit" / "config.toml"


def _flag_value(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def streamlit_argv(args: list[str]) -> tuple[list[str], str]:
    """(argv of ``python -m streamlit run streamlit_app.py`` with the repository's settings as
    flags and ``args`` after them, a warning line or "" when the address is loopback)."""
    with open(CONFIG, "rb") as f:
        settings = {f"--{section}.{key}": value for section, d in tomllib.load(f).items() for key, value in d.items()}
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    if "STREAMLIT_SERVER_ADDRESS" in os.environ:  # the user's own choice, like a flag
        given.add("--server.address")
    flags = [f"{k}={_flag_value(v)}" for k, v in settings.items() if k not in given]
    address = _address(args)
    if address is None:
        address = os.environ.get("STREAMLIT_SERVER_ADDRESS", settings.get("--server.address"))
    warning = exposure_warning(address)
    return [sys.executable, "-m", "streamlit", "run", str(APP), *flags, *args], warning


def _address(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--server.address" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--server.address="):
            return a.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> None:
    cmd, warning = streamlit_argv(list(sys.argv[1:] if argv is None else argv))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
