"""Issue 11 item 17 in the form: a suspicious pickle is refused unless the user picks "install it anyway"."""

from __future__ import annotations

import sys

import pytest
import yaml

from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.root.layout import RootLayout
from tests.ptyterm import PtyTerm, keys
from tests.test_security_install import _embedding

SLOW = 600


@pytest.mark.parametrize("choice, installed", [("install it anyway: I trust where it comes from", True),
                                               ("refuse it (recommended)", False)])
def test_the_form_asks_about_a_suspicious_pickle(tmp_path, choice, installed):
    root = RootLayout(tmp_path / "invokeai")
    create_layout(root)
    catalog = tmp_path / "empty-catalog.yaml"
    catalog.write_text("")
    f = _embedding(tmp_path / "odd-embedding.pt")
    with PtyTerm([sys.executable, "-m", "invokeai_model_install", "--root", str(root.root), "--catalog", str(catalog)],
                 cols=100, rows=35, timeout=120) as term:
        term.wait_for("No starter models in the catalogue.")
        term.type(str(f))
        term.wait_for(f.name)
        term.press("DONE")
        term.wait_for("INSTALLING MODELS")
        term.wait_for("suspicious pickle", timeout=SLOW)
        term.wait_for("refuse it (recommended)")
        if installed:
            term.focus(choice, keys.DOWN)
            term.send(keys.SPACE)
        term.press("OK")
        term.wait_for("Finished:", timeout=SLOW)
        text = term.text()
        assert ("1 done" in text) == installed and ("1 failed" in text) == (not installed), term.dump()
        term.press("EXIT", keys.TAB)
        term.wait_exit()
    stanzas = yaml.safe_load(root.models_yaml.read_text()) or {} if root.models_yaml.exists() else {}
    assert stanzas == {}  # an embedding gets no stanza in a 2.3 root: its manifest records it
    from invokeai_model_install.root import manifest as mf

    assert bool([m for m in mf.all_manifests(root) if m.state == "installed"]) == installed
