"""Notebooks under nbval run in the small "smoke" profile unless told otherwise, also when tested alone
(``./run test notebooks/02-linear-probing.ipynb``); their committed outputs come from the ``cpu`` profile."""
import os

os.environ.setdefault("FTLIB_PROFILE", "smoke")  # nbval starts each kernel with this process's environment
os.environ.setdefault("MPLBACKEND", "Agg")
