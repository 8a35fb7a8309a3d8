"""``python -m invokeai_model_install`` runs the installer command."""

import sys

from invokeai_model_install.app.cli import main

sys.exit(main())
