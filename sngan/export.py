"""``python -m sngan.export ckpt=PATH``: a generator-only safetensors file plus the JSON to rebuild it.

python -m sngan.export ckpt=outputs/run/checkpoints/best.pt out=sngan_cifar10.safetensors
# later, anywhere: sngan.load_generator("sngan_cifar10.safetensors")
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sngan.cli.command_settings import ExportConfig, check_export
from sngan.cli.errors import run_or_exit
from sngan.cli.hydra_checks import typos_named
from sngan.inference import export_generator, export_paths
from sngan.training.stopping import report_stops_with
from sngan.utils.outputs import Stamp, changed_since, stamp, written_report


def stop_report(before: Stamp) -> str:
    """What a Ctrl-C leaves: neither file, both, or (stopped between the two renames) one of the pair."""
    said = written_report(before)
    if len(changed_since(before)) == 1:
        said += ", but not the other: export again with overwrite=true (the pair is refused when loaded until then)"
    return said


@typos_named(ExportConfig)
@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="export")
def main(raw: DictConfig) -> None:
    cfg = run_or_exit(lambda: check_export(raw))
    before = stamp(list(export_paths(cfg.ckpt, cfg.out)))
    report_stops_with(lambda: stop_report(before))
    weights, meta = run_or_exit(lambda: export_generator(cfg.ckpt, cfg.out, cfg.ema, cfg.overwrite))
    print(f"Wrote {weights} and {meta}.", file=sys.stderr)


if __name__ == "__main__":
    main()
