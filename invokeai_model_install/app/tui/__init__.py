"""The full-screen installer (npyscreen): the form, its progress screen and popups.

Use :func:`invokeai_model_install.app.tui.app.run_form`.  Importing this package
imports nothing heavy (no npyscreen, no torch): ``app`` loads npyscreen only
after checking for a terminal.
"""
