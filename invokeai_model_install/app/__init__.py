"""Front ends: command line, headless runs, first-run wizard, launcher menu, rich renderer, the npyscreen form."""
