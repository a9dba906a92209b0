"""Optional dependencies come in named extras of the `ditlab` package (see pyproject.toml):

    lab     jupyterlab                                  run the notebooks locally
    hf      diffusers, datasets, huggingface_hub        Hugging Face data, VAEs, released weights, interop
    flops   fvcore                                      Gflops counted over a traced forward pass
    fid     torch-fidelity                              Inception FID
    flow    torchdiffeq                                 the adaptive ODE solver (dopri5) of the flow samplers
    app     voila                                       `ditlab playground`: the widgets as a web app
    all     every extra above;  test: what the test suite needs;  browser: the browser test (playwright, lab, app)

Wrap the import of one in `with requires("hf"):` so that a missing package fails with the extra to install,
not a bare ModuleNotFoundError.
"""
from contextlib import contextmanager


@contextmanager
def requires(extra: str):
    """Turn an ImportError inside the block into one that names `pip install 'ditlab[<extra>]'`."""
    try:
        yield
    except ImportError as e:
        missing = e.name.split(".")[0] if e.name else str(e)
        raise ImportError(f"{missing} is not installed: it comes with ditlab's [{extra}] extra, "
                          f"pip install 'ditlab[{extra}]'", name=e.name) from e
