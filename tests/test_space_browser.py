"""The Space in a real browser: `python spaces/jala_demo/app.py` in a subprocess with a tiny saved model and
fixture-built examples, driven by headless Chromium through selenium + chromedriver (both from Debian, no
browser download). It selects an example, clicks Generate, waits for the animation, the 3D plot and the metrics
table, uploads an image, and saves a screenshot plus the click-to-result time as test artifacts
(`$JALA_TEST_ARTIFACTS`, default `tests/artifacts/`, git-ignored by a `.gitignore` the test writes there).

Needs: `apt-get install chromium chromium-driver` and `pip install selenium gradio`; skipped otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.test_space_logic import SPACE_DIR, build_fixture_examples, save_tiny_jala

logger = logging.getLogger(__name__)

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)
INSTALL_HINT = "apt-get install -y chromium chromium-driver && pip install selenium 'gradio>=5,<7'"

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=f"no chromium on PATH ({INSTALL_HINT})"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason=f"no chromedriver on PATH ({INSTALL_HINT})"),
]


def _artifacts_dir() -> Path:
    folder = Path(os.environ.get("JALA_TEST_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")  # screenshots are outputs, never commits
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the app did not answer on {url} within {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def space_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    pytest.importorskip("gradio", reason=f"gradio is not installed ({INSTALL_HINT})")
    root = tmp_path_factory.mktemp("space_browser")
    model = save_tiny_jala(root / "tiny_jala")
    examples = build_fixture_examples(root)
    port = _free_port()
    log = root / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(SPACE_DIR / "app.py"), "--model", str(model), "--examples", str(examples)]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], stdout=output, stderr=subprocess.STDOUT, cwd=root, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for_server(url, process, log)
        yield url, examples
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium is not installed ({INSTALL_HINT})")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_select_example_generate_and_see_the_results(space_url: tuple[str, Path], browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, examples_dir = space_url
    examples = json.loads((examples_dir / "index.json").read_text())["examples"]
    chosen = next(index for index, entry in enumerate(examples) if entry["kind"] == "wild")
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    thumbnails = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#examples button.thumbnail-item"))
    assert len(thumbnails) == len(examples)
    assert "JalaForMotionPretraining" in browser.find_element(By.ID, "model-info").text

    thumbnails[chosen].click()
    instruction = browser.find_element(By.CSS_SELECTOR, "#instruction textarea")
    wait.until(lambda d: instruction.get_attribute("value") == examples[chosen]["instruction"])
    assert "procedural wild scene" in browser.find_element(By.ID, "source-note").text

    chunks = int(float(browser.find_element(By.CSS_SELECTOR, "#chunks input[type='number']").get_attribute("value")))
    started = time.perf_counter()
    browser.find_element(By.ID, "generate").click()
    animation = WebDriverWait(browser, 120).until(
        lambda d: next(
            (img for img in d.find_elements(By.CSS_SELECTOR, "#animation img") if ".gif" in img.get_attribute("src")),
            None,
        )
    )
    click_to_result_s = time.perf_counter() - started
    plot = WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#trajectory [data-testid='matplotlib'] img")
    )
    assert plot[0].get_attribute("src").startswith("data:image/")
    WebDriverWait(browser, 30).until(lambda d: "Generated" in d.find_element(By.ID, "status").text)
    metrics = browser.find_element(By.ID, "metrics").text
    assert "MPJPE (mm)" in metrics and re.search(r"\b\d+\.\d\b", metrics), metrics

    with urllib.request.urlopen(animation.get_attribute("src"), timeout=10) as response:
        gif_bytes = response.read()
    gif_path = _artifacts_dir() / "space_browser_motion.gif"
    gif_path.write_bytes(gif_bytes)
    with Image.open(gif_path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 15 * chunks

    artifacts = _artifacts_dir()
    browser.save_screenshot(str(artifacts / "space_browser.png"))
    (artifacts / "space_browser_timing.json").write_text(
        json.dumps({"click_to_result_s": round(click_to_result_s, 2), "model": "tiny test model"}, indent=2)
    )
    logger.info("click to result: %.1f s (tiny test model)", click_to_result_s)


def test_upload_an_image_shows_its_first_frame(space_url: tuple[str, Path], browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = space_url
    photo = tmp_path / "my_table.png"
    Image.new("RGB", (320, 240), (120, 160, 90)).save(photo)
    browser.get(url)
    # The UploadButton's hidden file input (the page also has the Dataframe's hidden CSV input).
    upload = WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "input[type='file'][accept*='.gif']")
    )
    upload.send_keys(str(photo))
    note = WebDriverWait(browser, 30).until(
        lambda d: (
            d.find_element(By.ID, "source-note") if "Upload" in d.find_element(By.ID, "source-note").text else None
        )
    )
    assert "my_table.png" in note.text and "60° horizontal field of view" in note.text
    preview = browser.find_element(By.CSS_SELECTOR, "#preview img")
    assert "upload_" in preview.get_attribute("src")
