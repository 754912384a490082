"""Training: the loop (loop.py, the story of a run) and what it calls: one D and one G update
(step.py), Adam (optim.py), losses, the run's state and checkpoints (state.py, checkpoint.py,
resume.py), stops and preemption (stopping.py), speed switches (speed.py, wrappers.py, memory.py),
torchrun (distributed.py), TensorBoard (tracking.py) and what is monitored (monitoring.py, spectral.py)."""
