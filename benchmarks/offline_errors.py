"""How fast the offline errors come: loading the released weights, a Hub VAE, or a checkpoint by a mistyped
name with no network. Measured and printed, never asserted (the tests check that no connection is tried).

    HF_HUB_OFFLINE=1 python benchmarks/offline_errors.py
"""
import os
import tempfile
import time

from ditlab import load_model
from ditlab.data.latents import load_vae
from ditlab.hub import load_released, load_sd_vae

os.environ.setdefault("HF_HUB_OFFLINE", "1")
cache = tempfile.mkdtemp(prefix="ditlab-offline-")
cases = {
    "load_released('DiT-XL-2-256x256')": lambda: load_released("DiT-XL-2-256x256", cache_dir=cache),
    "load_model('DiT-XL-2-256x256.pt')": lambda: load_model("DiT-XL-2-256x256.pt"),
    "load_model('digit-p4') (a typo)": lambda: load_model("digit-p4"),
    "load_vae('stabilityai/sd-vae-ft-ema')": lambda: load_vae("stabilityai/sd-vae-ft-ema"),
    "load_sd_vae('mse')": lambda: load_sd_vae("mse"),
}
print(f"{'call':<40} {'seconds':>8}  error")
for name, call in cases.items():
    t0 = time.perf_counter()
    try:
        call()
        outcome = "loaded (found locally)"
    except Exception as e:  # noqa: BLE001 - the error is what is measured
        outcome = f"{type(e).__name__}: {str(e).splitlines()[0][:60]}"
    print(f"{name:<40} {time.perf_counter() - t0:>8.3f}  {outcome}")
