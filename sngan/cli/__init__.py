"""What the commands share at the edge: errors and exit codes (errors.py), each command's settings
(settings.py), output-folder checks (outputs.py), the run-folder lock and Hydra callbacks
(run_lock.py, hydra_checks.py), the device and provenance of a run (provenance.py), and figures
written as PNG plus CSV (figures.py)."""
