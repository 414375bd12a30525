"""Which machine a run was timed on: seconds per round compare only within one machine."""

from __future__ import annotations

import socket
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def machine_id() -> str:
    """``<hostname>/<boot id>``: the same for every run on this machine until it reboots
    (a fresh virtual machine is a new one), ``<hostname>`` where Linux's boot id is not
    available."""
    host = socket.gethostname()
    try:
        return f"{host}/{BOOT_ID.read_text().strip()}"
    except OSError:
        return host
