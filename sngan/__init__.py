"""sngan: Spectrally Normalized GANs (Miyato et al., ICLR 2018).

``sngan.load_generator(path)`` gives a ready generator from a checkpoint or an
exported ``.safetensors`` file (see ``sngan.inference``).
"""

from __future__ import annotations

import sys
from typing import Any

__version__ = "0.1.0"
__all__ = ["load_generator"]


def __getattr__(name: str) -> Any:  # lazy, so `import sngan` stays light
    if name == "load_generator":
        from sngan.inference import load_generator

        return load_generator
    raise AttributeError(f"module 'sngan' has no attribute {name!r}")


# `python -m sngan.<command>`: while Python locates the command, sys.argv[0] is "-m" (and only then), so
# this runs before the command's slow imports (torch): a Ctrl-C in its first second gets one line, not a
# traceback. A program that merely imports sngan keeps its own Ctrl-C handling.
if sys.argv[:1] == ["-m"]:
    from sngan.training.stopping import answer_ctrl_c_from_the_start

    answer_ctrl_c_from_the_start(trains="sngan.train" in sys.orig_argv)  # the others say "nothing was written"
