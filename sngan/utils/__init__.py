"""Helpers below every package: processes under torchrun (distributed), out-of-memory errors (memory),
atomic file writes and output folders (outputs), the checkpoint file format (checkpoint). They import
nothing of sngan but ``config`` and ``registry``."""
