"""Whether the Hugging Face Hub can be reached (fail fast offline)."""
import os
import socket
from urllib.parse import urlparse

from ..extras import requires


def hub_reachable(timeout: float = 3.0) -> str | None:
    """None if the Hugging Face Hub may be reached, else a short reason (offline mode or no connection)."""
    with requires("hf"):
        from huggingface_hub import constants  # heavy optional dependency (the [hf] extra)

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_DATASETS_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}:
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy: let the real request decide
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return None
    except OSError as e:
        return f"cannot connect to {host} ({e})"
