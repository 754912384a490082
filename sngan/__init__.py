"""sngan: Spectrally Normalized GANs (Miyato et al., ICLR 2018).

``sngan.load_generator(path)`` gives a ready generator from a checkpoint or an
exported ``.safetensors`` file (see ``sngan.inference``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_generator"]


def __getattr__(name: str) -> Any:  # lazy, so `import sngan` stays light
    if name == "load_generator":
        from sngan.inference import load_generator

        return load_generator
    raise AttributeError(f"module 'sngan' has no attribute {name!r}")
