"""The web manager in a real browser: Debian's Chromium, headless, driven by Selenium through chromedriver.

One server process (``invokeai-model-install web``, worker in thread mode) and one
browser serve the whole module; the tests run in file order, each going on from
the page state the previous one left (as a user would).  Nothing leaves
127.0.0.1, and no browser or driver is ever downloaded: without
``/usr/bin/chromium`` + ``/usr/bin/chromedriver`` (``apt-get install chromium
chromium-driver``) the tests are skipped, saying so, except in CI (``CI`` set)
as root on Debian, where ``.ci/run`` installs them and a missing browser fails.

Screenshots of each page go to a temporary folder, or to ``docs/screenshots/``
when ``UPDATE_SCREENSHOTS=1`` (how the ones in docs/web.md were made).
"""

from __future__ import annotations

import http.server
import os
import shutil
import socketserver
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.fileserver import FileServer
from tests.web_support import LEGACY, LORA, OUTSIDE, WebProcess, build_template_root, copy_root

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,860")


def _missing() -> str:
    why = []
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        why.append(f"no browser at {CHROMIUM}")
    if not (Path(CHROMEDRIVER).is_file() and os.access(CHROMEDRIVER, os.X_OK)):
        why.append(f"no driver at {CHROMEDRIVER}")
    try:
        import selenium  # noqa: F401
    except ImportError:
        why.append("the selenium package is not installed")
    return "; ".join(why)


def _must_run() -> bool:
    """In CI as root on Debian the browser is installed by .ci/run: a missing one is a failure, not a skip."""
    return bool(os.environ.get("CI")) and hasattr(os, "geteuid") and os.geteuid() == 0 and Path("/etc/debian_version").exists()


_WHY = _missing()
if _WHY:
    if _must_run():
        pytest.fail(f"browser tests cannot run in CI: {_WHY} (.ci/run installs chromium and chromium-driver with apt-get)",
                    pytrace=False)
    pytest.skip(f"browser tests skipped: {_WHY}; install them with `apt-get install chromium chromium-driver` "
                "(Debian) and `pip install selenium`", allow_module_level=True)

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or driver
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
    else:
        folder = tmp_path_factory.mktemp("web-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_checkpoints, tiny_extras):
    """A root with three models, a downloads folder with two new checkpoints, the server, a throttled file server."""
    base = Path(tempfile.mkdtemp(prefix="web-"))  # short paths on the screenshots
    template = build_template_root(base / "template", base / "outside", tiny_checkpoints, tiny_extras)
    layout = copy_root(template, base / "invokeai")
    downloads = base / "Downloads"
    (downloads / "sd2").mkdir(parents=True)
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], downloads / "dreamy-sd1.safetensors")
    shutil.copyfile(tiny_checkpoints["sd-2", "safetensors"], downloads / "sd2" / "photo-sd2.safetensors")
    (downloads / "readme.txt").write_text("not a model")
    (base / "served").mkdir()
    files = FileServer(base / "served").start()
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], files.folder / "big-download.safetensors")
    files.faults.throttle("*.safetensors", 1024 * 1024)
    web = WebProcess(layout.root)
    try:
        yield {"layout": layout, "downloads": downloads, "web": web, "files": files}
    finally:
        if web.proc.poll() is None:
            web.stop()
        files.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def driver(env):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="iami-chromium-")
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(d, cond, timeout: float = 60, what: str = ""):
    """Wait for ``cond()``; elements replaced by a re-render meanwhile are looked up again."""
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
                             ).until(lambda _d: cond())
    except TimeoutException:
        shown = d.execute_script("return [...document.querySelectorAll('.error-line, #banner-text')]"
                                 ".map((e) => e.textContent).filter(Boolean)")
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; errors on the page: {shown}") from None


def statuses(d) -> list[str]:
    """The status of each item of the running/last job, as the page shows it."""
    return d.execute_script("return [...document.querySelectorAll('#job-items li.job-item')].map((li) => li.dataset.status)")


def rows(d) -> dict[str, object]:
    return {r.get_attribute("data-name"): r for r in d.find_elements(By.CSS_SELECTOR, "#models-body tr.model-row")}


def cell(d, name: str, css: str) -> str:
    return rows(d)[name].find_element(By.CSS_SELECTOR, css).text


def job_id(d) -> str:
    return d.execute_script("return document.body.dataset.job || ''")


def wait_new_job(d, before: str) -> None:
    wait(d, lambda: job_id(d) not in ("", before), what="a new job on the page")


def items(d) -> list:
    return d.find_elements(By.CSS_SELECTOR, "#job-items li.job-item")


def shot(d, folder: Path, name: str) -> None:
    time.sleep(0.2)  # let transitions settle
    assert d.save_screenshot(str(folder / name))


def api(env) -> "object":
    return env["web"].client()


# --- the tests, in page order -------------------------------------------------------------------------


def test_open_the_printed_address_and_see_the_installed_models(env, driver, shots):
    url = env["web"].line.split(": ", 1)[1]
    driver.get(url)
    wait(driver, lambda: driver.execute_script("return document.body.dataset.ready") == "1", what="page ready")
    assert list(rows(driver)) == [LEGACY, OUTSIDE, LORA]
    assert cell(driver, LEGACY, ".model-format") == "ckpt" and cell(driver, LEGACY, ".model-base") == "sd-1"
    assert cell(driver, LORA, ".model-kind") == "lora"
    assert "token=" not in driver.current_url  # dropped from the address bar; the HttpOnly cookie carries it
    assert driver.execute_script("return document.cookie") == ""  # not readable by scripts
    wait(driver, lambda: driver.execute_script("return document.body.dataset.connected") == "1", what="event stream")
    shot(driver, shots, "web-models.png")


def test_add_a_local_model_with_path_completion_and_folder_search_and_answer_the_sd2_question(env, driver, shots):
    downloads = env["downloads"]
    driver.find_element(By.ID, "tab-add").click()
    box = driver.find_element(By.ID, "add-input")
    box.send_keys(f"{downloads}/dre")
    wait(driver, lambda: [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#add-complete li")] == ["dreamy-sd1.safetensors"],
         what="completion of the typed path")
    shot(driver, shots, "web-add-completion.png")
    box.send_keys(Keys.TAB)
    assert box.get_attribute("value") == f"{downloads}/dreamy-sd1.safetensors"
    driver.find_element(By.ID, "add-button").click()
    # the folder search lists the model files below the folder, with checkboxes
    search = driver.find_element(By.ID, "search-input")
    search.send_keys(str(downloads))
    driver.find_element(By.ID, "search-button").click()
    wait(driver, lambda: len(driver.find_elements(By.CSS_SELECTOR, "#search-body tr[data-path]")) == 2, what="search results")
    found = [r.get_attribute("data-path") for r in driver.find_elements(By.CSS_SELECTOR, "#search-body tr[data-path]")]
    assert found == [str(downloads / "dreamy-sd1.safetensors"), str(downloads / "sd2" / "photo-sd2.safetensors")]
    driver.find_element(By.CSS_SELECTOR, f"#search-body tr[data-path='{downloads / 'sd2' / 'photo-sd2.safetensors'}'] input").click()
    driver.find_element(By.ID, "search-add").click()
    pending = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#pending-list li.pending-item")]
    assert len(pending) == 2
    shot(driver, shots, "web-add.png")
    before = job_id(driver)
    driver.find_element(By.ID, "install-button").click()
    wait_new_job(driver, before)
    # the SD-2 file's prediction type cannot be read: the page asks
    dialog = driver.find_element(By.ID, "question-dialog")
    wait(driver, lambda: dialog.is_displayed(), what="the SD-2 question")
    assert "Stable Diffusion 2" in driver.find_element(By.ID, "question-prompt").text
    shot(driver, shots, "web-question.png")
    dialog.find_element(By.CSS_SELECTOR, "button[data-choice='epsilon']").click()
    wait(driver, lambda: statuses(driver) == ["installed", "installed"],
         what="both items installed")
    assert driver.find_element(By.ID, "job-title").text == "Install finished"
    shot(driver, shots, "web-progress-finished.png")
    driver.find_element(By.ID, "tab-models").click()
    wait(driver, lambda: {"dreamy-sd1", "photo-sd2"} <= set(rows(driver)), what="new rows")
    with api(env) as c:
        stanza = {m["name"]: m for m in c.get("/api/models").json()["models"]}["photo-sd2"]
    assert stanza["config"].endswith("v2-inference.yaml")


def test_live_download_progress_and_cancel(env, driver, shots):
    url = env["files"].url_for("big-download.safetensors")
    driver.find_element(By.ID, "tab-add").click()
    box = driver.find_element(By.ID, "add-input")
    box.clear()
    box.send_keys(url)
    before = job_id(driver)
    driver.find_element(By.ID, "install-button").click()
    wait_new_job(driver, before)
    wait(driver, lambda: any("/s" in s.text and "left" in s.text for s in driver.find_elements(By.CSS_SELECTOR, "#job-items .stats")),
         what="bytes, speed and ETA of the download")
    wait(driver, lambda: driver.execute_script("const b = document.querySelector('#job-items .bar > div');"
                                               "return b && parseFloat(b.style.width) >= 8"), what="8% downloaded")
    assert driver.find_element(By.ID, "cancel-button").is_displayed()
    shot(driver, shots, "web-progress.png")
    driver.find_element(By.ID, "cancel-button").click()
    wait(driver, lambda: statuses(driver) == ["failed"], what="cancelled item")
    error = driver.find_element(By.CSS_SELECTOR, "#job-items .item-error").text
    assert "cancel" in error.lower() and "\n" not in error
    assert driver.find_element(By.ID, "job-title").text == "Install cancelled"
    assert list(env["layout"].partial_dir.glob("*.part"))  # partial download kept for a re-run


def test_a_failing_item_shows_one_readable_line(env, driver, shots):
    driver.find_element(By.ID, "tab-add").click()
    box = driver.find_element(By.ID, "add-input")
    box.clear()
    box.send_keys(str(env["downloads"] / "readme.txt"))
    before = job_id(driver)
    driver.find_element(By.ID, "install-button").click()
    wait_new_job(driver, before)
    wait(driver, lambda: statuses(driver) == ["failed"], what="failed item")
    error = driver.find_element(By.CSS_SELECTOR, "#job-items .item-error").text
    assert "readme.txt" in error and "\n" not in error
    shot(driver, shots, "web-error.png")


def test_convert_a_checkpoint_to_diffusers(env, driver, shots):
    driver.find_element(By.ID, "tab-models").click()
    rows(driver)[LEGACY].find_element(By.CSS_SELECTOR, "button[data-action='convert']").click()
    dialog = driver.find_element(By.ID, "convert-dialog")
    wait(driver, lambda: dialog.is_displayed(), what="convert dialog")
    shot(driver, shots, "web-convert-dialog.png")
    before = job_id(driver)
    driver.find_element(By.ID, "convert-confirm").click()
    wait_new_job(driver, before)
    wait(driver, lambda: statuses(driver) == ["installed"], what="converted")
    assert driver.find_element(By.ID, "job-title").text == "Conversion finished"
    driver.find_element(By.ID, "tab-models").click()
    wait(driver, lambda: cell(driver, LEGACY, ".model-format") == "diffusers", what="diffusers row")
    assert not rows(driver)[LEGACY].find_elements(By.CSS_SELECTOR, "button[data-action='convert']")
    layout = env["layout"]
    assert (layout.converted_dir / LEGACY / "model_index.json").is_file()
    assert (layout.kind_dir("main") / f"{LEGACY}.safetensors").is_file()  # original kept


def test_edit_and_make_default(env, driver, shots):
    rows(driver)["dreamy-sd1"].find_element(By.CSS_SELECTOR, "button[data-action='edit']").click()
    dialog = driver.find_element(By.ID, "edit-dialog")
    wait(driver, lambda: dialog.is_displayed(), what="edit dialog")
    desc = driver.find_element(By.ID, "edit-description")
    desc.clear()
    desc.send_keys("Dreamy landscapes, SD 1.5 fine-tune")
    shot(driver, shots, "web-edit-dialog.png")
    driver.find_element(By.ID, "edit-save").click()
    wait(driver, lambda: not dialog.is_displayed(), what="dialog closed", timeout=10)
    wait(driver, lambda: "Dreamy landscapes" in rows(driver)["dreamy-sd1"].text, what="new description")
    rows(driver)[LEGACY].find_element(By.CSS_SELECTOR, "button[data-action='default']").click()
    wait(driver, lambda: cell(driver, LEGACY, ".default-mark") == "★", what="default marker")
    assert not rows(driver)[LORA].find_elements(By.CSS_SELECTOR, "button[data-action='default']")  # a LoRA cannot be the default


def test_delete_with_purge(env, driver, shots):
    lora_file = env["layout"].kind_dir("lora") / f"{LORA}.safetensors"
    assert lora_file.exists()
    rows(driver)[LORA].find_element(By.CSS_SELECTOR, "button[data-action='delete']").click()
    dialog = driver.find_element(By.ID, "delete-dialog")
    wait(driver, lambda: dialog.is_displayed(), what="delete dialog")
    driver.find_element(By.ID, "delete-purge").click()
    shot(driver, shots, "web-delete-dialog.png")
    driver.find_element(By.ID, "delete-confirm").click()
    wait(driver, lambda: LORA not in rows(driver), what="row gone")
    assert not lora_file.exists()
    shot(driver, shots, "web-models-after.png")


def test_register_a_comfyui_folder_in_place(env, driver, shots, tiny_checkpoints, tiny_extras):
    """The add screen's "Register ... where they are (no copy)": a ComfyUI models folder is registered where it lies;
    ticked with "Convert ..." the install is refused in one line; the models list shows each model's own path."""
    from invokeai_model_install.app.web.server import CONVERT_LABEL, IN_PLACE_LABEL

    tree = env["downloads"].parent / "ComfyUI" / "models"
    ckpt = tree / "checkpoints" / "comfy-dreamshaper.safetensors"
    lora = tree / "loras" / "comfy-style.safetensors"
    for path, src in ((ckpt, tiny_checkpoints["sd-1", "safetensors"]), (lora, tiny_extras["lora-sd-1.safetensors"])):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)
    stats = {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in (ckpt, lora)}
    driver.find_element(By.ID, "tab-add").click()
    box = driver.find_element(By.ID, "add-input")
    box.clear()
    box.send_keys(str(tree))
    driver.find_element(By.ID, "add-button").click()
    in_place = driver.find_element(By.ID, "opt-in-place")
    assert in_place.find_element(By.XPATH, "..").text == IN_PLACE_LABEL
    assert not in_place.is_selected()
    in_place.click()
    convert = driver.find_element(By.ID, "opt-convert")
    convert.click()
    # both: refused in one line, nothing starts, the list and both boxes stay as they are
    with api(env) as c:
        started = c.get("/api/state").json()["jobs_started"]
    driver.find_element(By.ID, "install-button").click()
    banner = driver.find_element(By.ID, "banner-text")
    wait(driver, lambda: banner.is_displayed() and "exclude each other" in banner.text, what="the refusal")
    assert IN_PLACE_LABEL in banner.text and CONVERT_LABEL in banner.text and "\n" not in banner.text
    with api(env) as c:
        assert c.get("/api/state").json()["jobs_started"] == started
    assert in_place.is_selected() and convert.is_selected()
    assert [li.find_element(By.CSS_SELECTOR, ".mono").text for li in driver.find_elements(By.CSS_SELECTOR, "#pending-list li.pending-item")] == [str(tree)]
    driver.find_element(By.ID, "banner-close").click()
    convert.click()
    assert not convert.is_selected()
    shot(driver, shots, "web-add-in-place.png")
    before = job_id(driver)
    driver.find_element(By.ID, "install-button").click()
    wait_new_job(driver, before)
    wait(driver, lambda: sorted(statuses(driver)) == ["installed", "installed"], what="both models registered")
    notes = " ".join(n.text for n in driver.find_elements(By.CSS_SELECTOR, "#job-items .note-line"))
    assert "registered in place" in notes and "--in-place" not in notes, notes
    driver.find_element(By.ID, "tab-models").click()
    wait(driver, lambda: {"comfy-dreamshaper", "comfy-style"} <= set(rows(driver)), what="the in-place rows")
    for name, path in (("comfy-dreamshaper", ckpt), ("comfy-style", lora)):
        assert cell(driver, name, ".pill.in-place") == "in place"
        assert cell(driver, name, ".model-path") == str(path)
    assert not rows(driver)[LEGACY].find_elements(By.CSS_SELECTOR, ".pill.in-place")  # inside the root: no path shown
    # a LoRA has no models.yaml stanza in a 2.3 root: nothing to edit, so no Edit button (a main model has one)
    assert not rows(driver)["comfy-style"].find_elements(By.CSS_SELECTOR, "[data-action=edit]")
    assert rows(driver)["comfy-dreamshaper"].find_elements(By.CSS_SELECTOR, "[data-action=edit]")
    assert cell(driver, "comfy-dreamshaper", ".model-format") == "ckpt"
    driver.execute_script("arguments[0].scrollIntoView()", rows(driver)["comfy-dreamshaper"])  # both new rows on the shot
    shot(driver, shots, "web-models-in-place.png")
    assert {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in (ckpt, lora)} == stats  # untouched
    layout = env["layout"]
    assert not [p for p in layout.root.rglob("*.safetensors") if p.stat().st_ino in {i for i, _, _ in stats.values()}]
    assert not list(layout.root.rglob("comfy-*.safetensors"))  # no copy anywhere in the root (manifests only)
    driver.find_element(By.ID, "tab-add").click()
    in_place.click()  # as a user would, for what comes next
    assert not in_place.is_selected()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_a_page_from_another_origin_cannot_trigger_an_install(env, driver, tmp_path):
    """A local page on another port (same site, other origin: the cookie IS sent) tries every way to POST."""
    web = env["web"]
    target = web.base
    victim = str(env["downloads"] / "sd2" / "photo-sd2.safetensors")
    (tmp_path / "evil.html").write_text(f"""<!doctype html><html><body>
<form id="f" method="POST" action="{target}/api/install" enctype="text/plain" target="sink">
<input name='{{"items": ["{victim}"], "x": "' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
const body = JSON.stringify({{items: ["{victim}"]}});
const tries = [
  fetch("{target}/api/install", {{method: "POST", mode: "no-cors", credentials: "include", headers: {{"Content-Type": "text/plain"}}, body}}),
  fetch("{target}/api/install", {{method: "POST", credentials: "include", headers: {{"Content-Type": "application/json"}}, body}}),
  fetch("{target}/api/models/{LEGACY}?purge=1", {{method: "DELETE", credentials: "include"}}),
  fetch("{target.replace("127.0.0.1", "localhost")}/api/install", {{method: "POST", mode: "no-cors", credentials: "include", body}}),
];
Promise.allSettled(tries).then((r) => {{ document.title = "done " + r.map((x) => x.status).join(","); document.getElementById("f").submit(); }});
</script></body></html>""")
    handler = lambda *a, **kw: _QuietHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as evil:
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        with api(env) as c:
            before = c.get("/api/state").json()["jobs_started"]
            models_before = [m["name"] for m in c.get("/api/models").json()["models"]]
            driver.get(f"http://127.0.0.1:{evil.server_address[1]}/evil.html")
            wait(driver, lambda: driver.title.startswith("done"), what="the attacking page ran")
            time.sleep(1.5)  # the form post too
            assert c.get("/api/state").json()["jobs_started"] == before
            assert [m["name"] for m in c.get("/api/models").json()["models"]] == models_before
        evil.shutdown()
    # and the real page still works afterwards
    driver.get(f"{target}/")
    wait(driver, lambda: driver.execute_script("return document.body.dataset.ready") == "1", what="page ready")
    assert LEGACY in rows(driver)
