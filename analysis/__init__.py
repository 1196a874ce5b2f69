"""From sweep folders to a report: load -> figures -> report (`python analysis/report.py [SWEEP_DIR ...]`)."""
