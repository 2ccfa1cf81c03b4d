"""Which network address the dashboard listens on, and the warning when it is not loopback.

The dashboard can start and stop training processes on this machine, so it is meant for
127.0.0.1 only; from elsewhere, tunnel to it (``ssh -L``) instead of opening it to the network.
"""

from __future__ import annotations

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_warning(address: str | None) -> str:
    """One line of warning when ``address`` (Streamlit's ``server.address``; empty or None =
    every interface) is reachable from other machines, else ""."""
    if address in LOOPBACK:
        return ""
    where = f"'{address}'" if address else "every network interface (no address was set)"
    return (f"The dashboard listens on {where}: anyone who can reach this machine can read your runs and start "
            "or stop training processes. Start it with `python -m dashboard` (127.0.0.1), and from elsewhere "
            "tunnel to it: ssh -L 8501:127.0.0.1:8501 <this host>.")
