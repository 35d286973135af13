"""The web page in a real headless chromium against a real gateway, coordinator, etcd and tiny node:
upload, generate, watch progress, play and download the video, cancel, history, cluster, token."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser.browser import by_id, by_label, js, screenshot, start_chromium, text, wait_file, wait_for
from tests.media import decode, png, png_claiming

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Records what the job panel showed, so a quick job's progress is not missed between polls.
RECORD = """
window.__seen = {progress: [], status: [], eta: [], mode: []};
for (const [id, key] of [["progress-text", "progress"], ["status", "status"], ["eta", "eta"],
                         ["watch-mode", "mode"]]) {
  new MutationObserver(() => window.__seen[key].push(document.getElementById(id).textContent))
    .observe(document.getElementById(id), {childList: true, characterData: true, subtree: true});
}
"""


@pytest.fixture(scope="module")
def download_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(download_dir: Path) -> Iterator[webdriver.Chrome]:
    driver = start_chromium(download_dir)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = {"gradient": folder / "gradient.png", "bomb": folder / "bomb.png"}
    paths["gradient"].write_bytes(png(96, 64))
    paths["bomb"].write_bytes(png_claiming(5000, 5000))
    return paths


def open_page(browser: webdriver.Chrome, url: str) -> None:
    browser.get(url)
    # limits applied: the frames field holds the server's default and names its range
    wait_for(browser, lambda d: by_id(d, "frames").get_attribute("value") and text(d, "frames-hint"))


def fill(browser: webdriver.Chrome, **values: object) -> None:
    for label, value in values.items():
        field = by_label(browser, label.replace("_", " "))
        field.clear()
        field.send_keys(str(value))


def choose_custom_size(browser: webdriver.Chrome, width: int, height: int) -> None:
    by_id(browser, "preset-custom").click()
    fill(browser, Width=width, Height=height)


DROP = """
const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
const zone = document.getElementById("dropzone");
zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
"""


def size(browser: webdriver.Chrome) -> tuple[str | None, str | None]:
    return by_id(browser, "width").get_attribute("value"), by_id(browser, "height").get_attribute("value")


def history_row(browser: webdriver.Chrome, job: str) -> dict[str, Any] | None:
    """A history row in one read: state, text and buttons."""
    row: dict[str, Any] | None = js(
        browser,
        "const r = document.getElementById('history-' + arguments[0]); return r && {status: r.dataset.status,"
        " text: r.innerText, buttons: [...r.querySelectorAll('button')].map((b) => b.textContent)}",
        job,
    )
    return row


def wait_status(browser: webdriver.Chrome, want: str, timeout: float = 60) -> None:
    wait_for(browser, lambda d: by_id(d, "job-panel").get_attribute("data-status") == want, timeout)


def test_page_loads_limits_presets_and_cluster(
    browser: webdriver.Chrome, site: str, images: dict[str, Path], shots: Path
) -> None:
    open_page(browser, site)
    assert "1–64" in text(browser, "frames-hint") and "default 16" in text(browser, "frames-hint")
    assert by_id(browser, "steps").get_attribute("max") == "200"
    assert size(browser) == ("512", "512")  # the 512p preset, before any image
    # dropped onto the drop zone (a synthetic drop: selenium cannot drag files from the desktop)
    js(browser, DROP, base64.b64encode(images["gradient"].read_bytes()).decode())
    wait_for(browser, lambda d: js(d, "return document.getElementById('preview').naturalWidth") == 96)
    assert text(browser, "dropzone-text") == "dropped.png"
    by_id(browser, "preset-768").click()
    # 768p keeps the image's 3:2 shape at about 768x768 pixels, on the 8-pixel grid
    assert size(browser) == ("944", "624")
    assert by_id(browser, "width").get_attribute("readonly")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#cluster-nodes tbody tr"))
    assert text(browser, "cluster-leader") not in ("-", "none")
    row = browser.find_element(By.CSS_SELECTOR, "#cluster-nodes tbody tr")
    assert "tiny" in row.text.lower() or "cpu" in row.text.lower(), row.text
    screenshot(browser, shots / "01-form.png")


@pytest.mark.parametrize(
    ("preset", "aspect", "want"),
    [
        pytest.param(512, 1.0, [512, 512], id="square-512p"),
        pytest.param(768, 1.5, [944, 624], id="landscape-3-2"),
        pytest.param(512, 9 / 16, [384, 680], id="portrait-9-16"),
        pytest.param(1024, 16 / 9, [1280, 768], id="wide-1024p-clamped-to-max-width"),
        pytest.param(512, 100.0, [1280, 64], id="panorama-clamped-both-ways"),
    ],
)
def test_preset_sizes(
    browser: webdriver.Chrome, site: str, preset: int, aspect: float, want: list[int]
) -> None:
    if not browser.current_url.startswith(site):
        open_page(browser, site)
    got = browser.execute_async_script(
        "const done = arguments[2];"
        " import('/static/form.js').then((m) => done(m.presetSize(arguments[0], arguments[1])));",
        preset,
        aspect,
    )
    assert got == want


def test_errors_show_beside_their_field(
    browser: webdriver.Chrome, site: str, images: dict[str, Path]
) -> None:
    open_page(browser, site)
    by_label(browser, "Input image").send_keys(str(images["gradient"]))
    fill(browser, Prompt="a gradient", Steps=9999)
    by_id(browser, "generate").click()
    assert "at most 200" in text(browser, "steps-error")
    assert by_id(browser, "steps").get_attribute("aria-invalid") == "true"
    # the server's own check, named by its `param` (input_reference), lands beside the image picker
    fill(browser, Steps=2)
    by_label(browser, "Input image").send_keys(str(images["bomb"]))
    by_id(browser, "generate").click()
    wait_for(browser, lambda d: "pixels" in text(d, "image-error"))
    assert not by_id(browser, "steps-error").is_displayed()


def generate(
    browser: webdriver.Chrome, image: Path, width: int = 64, height: int = 64, **values: object
) -> str:
    """Fills the form, submits, and returns the new job's id."""
    by_label(browser, "Input image").send_keys(str(image))
    choose_custom_size(browser, width, height)
    fill(browser, **values)
    before = text(browser, "job-id")
    by_id(browser, "generate").click()
    return str(wait_for(browser, lambda d: text(d, "job-id") != before and text(d, "job-id")))


def test_generate_watch_play_and_download(
    browser: webdriver.Chrome, site: str, images: dict[str, Path], download_dir: Path, shots: Path
) -> None:
    open_page(browser, site)
    js(browser, RECORD)
    job = generate(
        browser, images["gradient"], Prompt="a drifting gradient", Frames=6, FPS=6, Steps=6, Seed=7
    )
    wait_status(browser, "completed")
    wait_for(browser, lambda d: by_id(d, "result").is_displayed())
    seen = js(browser, "return window.__seen")
    steps = [p for p in seen["progress"] if "step " in p]
    assert any("step 1/6" in p for p in steps) and any("step 6/6" in p for p in steps), seen
    assert "live" in seen["mode"], seen  # progress came over SSE, not polling
    assert text(browser, "result-seed") == "7"
    assert text(browser, "result-profile") not in ("", "-")
    assert text(browser, "result-degradations") == "none"
    assert text(browser, "node") not in ("", "-")
    # the video plays inline: metadata read, 6 frames at 6 fps, time moving or at the end
    video = "const v = document.getElementById('video');"
    wait_for(browser, lambda d: js(d, video + "return v.readyState >= 2 && v.duration > 0"))
    assert abs(js(browser, video + "return v.duration") - 1.0) < 0.2
    start = js(browser, video + "return v.currentTime")
    wait_for(browser, lambda d: js(d, video + "return v.ended || v.currentTime != arguments[0]", start))
    assert js(browser, video + "return v.error") is None
    # without a token the player streams the content URL itself, in byte ranges
    content = [h for url, h in requests_sent(browser) if url.endswith(f"/v1/videos/{job}/content")]
    assert content and all("bytes=" in lower(h).get("range", "") for h in content), content
    screenshot(browser, shots / "02-done.png")
    by_id(browser, "download").click()
    data = wait_file(download_dir / f"{job}.mp4").read_bytes()
    assert data[4:8] == b"ftyp"
    assert decode(data) == (6, 6.0, 64, 64)


def test_cancel_history_and_rerun(
    browser: webdriver.Chrome, site: str, images: dict[str, Path], shots: Path
) -> None:
    open_page(browser, site)
    done_id = generate(browser, images["gradient"], Prompt="quick", Frames=2, FPS=2, Steps=2, Seed=7)
    wait_status(browser, "completed")
    long_job = generate(browser, images["gradient"], Prompt="a long one", Frames=16, FPS=8, Steps=200)
    # the cluster view, refreshed on its own, shows the node busy with it
    # (the job's id where the answering coordinator knows it: a standby knows only "busy")
    wait_for(
        browser,
        lambda d: (
            {long_job, "busy"}
            & set(js(d, "return document.getElementById('cluster-nodes').innerText").split())
        ),
        15,
    )
    assert by_id(browser, "job-panel").get_attribute("data-status") == "in_progress"
    by_id(browser, "cancel").click()
    wait_status(browser, "failed")
    wait_for(browser, lambda d: "cancel" in text(d, "job-error").lower())
    wait_for(browser, lambda d: (history_row(d, long_job) or {}).get("status") == "failed")
    row = history_row(browser, long_job) or {}
    assert "cancelled" in row["text"] and "64x64" in row["text"], row
    assert row["buttons"] == ["Re-run"], row  # nothing left to cancel or show
    screenshot(browser, shots / "03-cancelled.png")
    # re-run the finished job: same parameters (seed 7), a new job, the same seed reported
    by_id(browser, "rerun-" + done_id).click()
    wait_for(browser, lambda d: text(d, "job-id") not in (long_job, done_id))
    wait_status(browser, "completed")
    wait_for(browser, lambda d: by_id(d, "result").is_displayed())
    assert text(browser, "result-seed") == "7"
    rerun = text(browser, "job-id")
    wait_for(browser, lambda d: d.find_elements(By.ID, "show-" + done_id))
    # a finished job from the history back into the player
    by_id(browser, "show-" + done_id).click()
    wait_for(browser, lambda d: text(d, "job-id") == done_id)
    wait_for(browser, lambda d: js(d, "return document.getElementById('video').readyState >= 2"))
    assert rerun != done_id


# Wraps the page's fetch of a job's event stream: records each request's Last-Event-ID and either
# cuts the first stream after its first event with an id (a dropped connection) or fails them all
# (a proxy that does not pass event streams).
BREAK_EVENTS = """
const mode = arguments[0];
window.__sse = [];
const realFetch = window.fetch;
window.fetch = async (url, init) => {
  if (!String(url).endsWith("/events")) return realFetch(url, init);
  window.__sse.push(new Headers(init.headers).get("Last-Event-ID"));
  if (mode === "fail") throw new TypeError("event streams blocked");
  const response = await realFetch(url, init);
  if (window.__sse.length > 1) return response;
  const reader = response.body.getReader();
  const body = new ReadableStream({
    async pull(controller) {
      const {value, done} = await reader.read();
      if (done) return controller.close();
      controller.enqueue(value);
      if (new TextDecoder().decode(value).includes("\\nid: ")) {
        reader.cancel();
        controller.error(new TypeError("connection dropped"));
      }
    },
  });
  return new Response(body, {status: response.status, headers: response.headers});
};
"""


@pytest.mark.parametrize(
    ("breakage", "modes"),
    [
        pytest.param("cut", ["live", "reconnecting"], id="reconnects-with-last-event-id"),
        pytest.param("fail", ["polling"], id="falls-back-to-polling"),
    ],
)
def test_progress_survives_a_broken_event_stream(
    browser: webdriver.Chrome, site: str, images: dict[str, Path], breakage: str, modes: list[str]
) -> None:
    open_page(browser, site)
    js(browser, RECORD)
    js(browser, BREAK_EVENTS, breakage)
    generate(browser, images["gradient"], Prompt="steady", Frames=4, FPS=4, Steps=40)
    wait_status(browser, "completed", timeout=90)
    seen, sse = js(browser, "return window.__seen"), js(browser, "return window.__sse")
    assert all(mode in seen["mode"] for mode in modes), seen["mode"]
    if breakage == "cut":
        assert sse[0] is None and sse[1], sse  # the reconnect named the last event it had
        assert any(e.startswith("ETA ") for e in seen["eta"]), seen["eta"]
        assert any("steps/s" in p for p in seen["progress"]), seen["progress"]
    else:
        assert len(sse) == 3, sse  # three tries, then polling only
    wait_for(browser, lambda d: js(d, "return document.getElementById('video').readyState >= 2"))


def test_token_is_kept_and_sent_as_bearer(
    browser: webdriver.Chrome, site: str, images: dict[str, Path], download_dir: Path
) -> None:
    open_page(browser, site)
    token = by_label(browser, "API token")
    token.send_keys("webui-test-token", Keys.ENTER)
    browser.get_log("performance")  # drop what came before
    browser.refresh()
    open_page(browser, site)
    assert by_id(browser, "token").get_attribute("value") == "webui-test-token"
    wait_for(browser, lambda d: text(d, "cluster-leader") not in ("-", ""))
    sent = requests_sent(browser)
    api_calls = {url: lower(headers) for url, headers in sent if "/v1/" in url}
    assert {"limits", "cluster", "videos?limit=20"} <= {url.rsplit("/", 1)[1] for url in api_calls}, api_calls
    assert all(h.get("authorization") == "Bearer webui-test-token" for h in api_calls.values()), api_calls
    # with a token the video comes through fetch (a header a <video> cannot send), played from a blob
    job = generate(browser, images["gradient"], Prompt="with a token", Frames=2, FPS=2, Steps=2)
    wait_status(browser, "completed")
    wait_for(browser, lambda d: js(d, "return document.getElementById('video').readyState >= 2"))
    assert str(by_id(browser, "video").get_attribute("src")).startswith("blob:")
    by_id(browser, "download").click()
    assert decode(wait_file(download_dir / f"{job}.mp4").read_bytes())[0] == 2
    fetched = [lower(h) for url, h in requests_sent(browser) if url.endswith(f"/v1/videos/{job}/content")]
    assert fetched and all(h.get("authorization") == "Bearer webui-test-token" for h in fetched), fetched
    by_id(browser, "token").clear()
    by_id(browser, "token").send_keys(Keys.ENTER)
    assert js(browser, "return localStorage.getItem('i2v.token')") is None


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def requests_sent(browser: webdriver.Chrome) -> list[tuple[str, dict[str, str]]]:
    """(url, headers) of each request the page made since the last call, from chromium's log."""
    sent = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            request = message["params"]["request"]
            sent.append((request["url"], request["headers"]))
    return sent
