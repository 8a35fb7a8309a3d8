"""The install plan and its execution: plan, plan files, one item's pipeline, autoscan, the worker."""
