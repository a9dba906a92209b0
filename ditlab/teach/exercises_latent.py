"""The checks of notebook 08: latent diffusion (the paper's §3.1 — a VAE's latents instead of pixels)."""
from ..eval import estimate_flops
from ..model import get_config
from .exercise_tools import call, close, exercise, expect, randn


@exercise("08_latent_diffusion")
def _scale_factor(answer):
    for shape, std, mean in (((64, 4, 8, 8), 2.0, 0.0), ((32, 4, 4, 4), 0.25, 0.3), ((10, 1, 6, 6), 5.0, -1.0)):
        z = randn(*shape, seed=len(shape) + shape[0]) * std + mean  # latents of a known spread
        got = float(call(answer, z))
        expect(close(got, 1 / z.std().item(), 1e-4), f"latents (N, C, h, w) with std {std} and mean {mean}: the "
                                                      "factor makes them unit-variance (one number over all elements)")
    return "Stable Diffusion's VAE has 0.18215: its raw latents have a std of about 5.5."


@exercise("08_latent_diffusion")
def _pixel_vs_latent(answer):
    pixels = {}  # name -> pixel-space Gflops
    for name, size, factor in (("DiT-XL/2", 256, 8), ("DiT-S/4", 256, 8), ("DiT-Mi/2", 32, 4)):
        got = call(answer, name, size, factor)
        expect(len(got) == 2, "return a pair: (pixel-space Gflops, latent-space Gflops)")
        pixel = pixels[name] = estimate_flops(get_config(name, input_size=size, in_channels=3)) / 1e9
        latent = estimate_flops(get_config(name, input_size=size // factor, in_channels=4)) / 1e9
        expect(close(got[1], latent, 1e-6), f"wrong latent Gflops for {name} at {size} px, f = {factor}: the DiT "
               f"sees {size}/f × {size}/f latents with 4 channels (get_config overrides, estimate_flops)")
        expect(close(got[0], pixel, 1e-6), f"wrong pixel Gflops for {name} at {size} px: the same DiT on the RGB "
               "image itself (3 channels)")
    xl2 = pixels["DiT-XL/2"]
    return (f"DiT-XL/2 on 256 px pixels would cost {xl2:,.0f} Gflops a forward pass, {xl2 / 118.6:.0f}× the "
            "latent model's 118.6: 64× the tokens, and attention grows with their square.")


@exercise("08_latent_diffusion")
def _latent_share(answer):
    expect(close(float(answer), 32 * 32 * 4 / (256 * 256 * 3), 1e-3), "numbers in a 32×32×4 latent ÷ numbers in a "
                                                                     "256×256×3 image")
    return "The latent keeps one number in 48; the VAE's decoder puts the fine detail back."

