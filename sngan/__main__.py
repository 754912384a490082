"""``python -m sngan``: the commands, one line each (each is a module of its own: ``python -m sngan.<command>``).

Imports nothing of the package beyond its ``__init__``, so the list comes at once, without torch.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "train": "train a GAN; settings are Hydra overrides (model=, dataset=, loss=, train.steps=...)",
    "evaluate": "FID, IS, KID, precision/recall of a checkpoint, a run folder or any images (JSON)",
    "sample": "PNGs, a grid or interpolations from a checkpoint or an exported generator",
    "export": "a checkpoint's generator as .safetensors (+ .json) for sngan.load_generator",
    "fid_stats": "a dataset's Inception reference statistics (.npz), computed once and cached",
    "report": "a run's curves and latest samples on one page (report.png, .html, .json)",
    "paper_figures": "the paper's Figures 1-3 (PNG + CSV) from a finished grid of runs (docs/paper.md)",
}


def usage() -> str:
    lines = [f"  python -m sngan.{name:<13} {what}" for name, what in COMMANDS.items()]
    return (
        "usage: python -m sngan.<command> [setting=value ...]\n\ncommands:\n" + "\n".join(lines) + "\n\n"
        "example: python -m sngan.train experiment=quickstart   (a few CPU minutes; README.md)\n"
        "Each command's --help lists its settings."
    )


def main(argv: list[str]) -> int:
    """0 with the list on stdout for no arguments or --help; 2 with it on stderr for anything else (this
    module runs no command itself: ``python -m sngan train`` is told the spelling that does)."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command = argv[0] if argv[0] in COMMANDS else None
    spelled = f"python -m sngan.{command} {' '.join(argv[1:])}".rstrip() if command else None
    hint = f"run {spelled}" if spelled else "name the command in the module: python -m sngan.<command>"
    print(f"error: python -m sngan runs no command itself (it was given {' '.join(argv)!r}); {hint}.", file=sys.stderr)
    print(usage(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
