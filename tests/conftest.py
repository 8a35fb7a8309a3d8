"""Shared test set-up.

The HuggingFace environment is isolated here, at import time, before any test
module can import huggingface_hub or diffusers (FACTS.md: HF_ENDPOINT and
friends are read once, when ``huggingface_hub.constants`` is first imported).
Our own code never relies on that: it passes ``endpoint=`` explicitly.

Fixtures live in plugin modules, one per area, each owned by its module's tests:
- ``tests.plugin_servers``: the stand-in hub and the plain file server (loopback HTTP).
- ``tests.plugin_models``: tiny, structurally real Stable Diffusion models (session cache).
"""

import atexit
import os
import shutil
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="iami-hf-home-")
# One per pytest session; without this every run left a folder in /tmp.
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_ETAG_TIMEOUT"] = "5"
os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = "10"
os.environ["DO_NOT_TRACK"] = "1"
for _var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_API_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "INVOKEAI_ROOT"):
    os.environ.pop(_var, None)

pytest_plugins = ["tests.plugin_servers", "tests.plugin_models"]
