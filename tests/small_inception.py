"""``python tests/small_inception.py sngan.<command> <overrides>`` (or ``torchrun ... tests/small_inception.py
sngan.train ...``): the command exactly as ``python -m sngan.<command>`` runs it, except that the Inception
network reads 75x75 inputs, as in the suite's own process (conftest.small_inception_inputs): a sixteenth of the
work. For the tests of what a command does with its files, ranks and signals, whose numbers come from random
weights and are compared only with numbers made the same way; the tests that compare with pytorch-fid's
own numbers start ``python -m`` as users do (299x299)."""

from __future__ import annotations

import runpy
import sys

from sngan.metrics import inception
from sngan.training.stopping import answer_ctrl_c_from_the_start

if __name__ == "__main__":
    command = sys.argv.pop(1)  # sys.argv[1:] are the command's own arguments, as under python -m
    answer_ctrl_c_from_the_start(trains=command == "sngan.train")  # what `import sngan` does under python -m
    inception.INPUT_SIZE = 75
    runpy.run_module(command, run_name="__main__", alter_sys=True)
