"""Shared test set-up: notebooks under nbval run in the small "smoke" profile unless told otherwise."""
import os

# nbval starts each notebook's kernel with this process's environment.
os.environ.setdefault("FTLIB_PROFILE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")
