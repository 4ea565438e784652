"""``rezoo demo``: real requests through a running server (gradio_client), and the page in headless
Chromium (selenium), on tiny weights saved as a user's export."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import zoo
from tests.conftest import ROOT, TINY_NETS

gradio_client = pytest.importorskip(
    "gradio_client", reason="the demo tests need the demo extra: pip install -e '.[demo]'"
)
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

HEIGHT, WIDTH = 97, 131
STROKE = (slice(40, 56), slice(20, 100))  # rows, columns of the drawn mask


def save_tiny_weights(path: Path, name: str, **kwargs) -> Path:
    torch.manual_seed(0)
    kwargs = {**TINY_NETS[name], **kwargs}
    model = zoo.create_model(name, **kwargs)
    metadata = {"rezoo": json.dumps({"model": name, "tag": "tiny", "kwargs": kwargs})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_demo(tmp: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``python tools/demo.py ...`` as a user starts it; returns the process and its URL once it serves."""
    port = free_port()
    log = open(tmp / f"demo-{port}.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "demo.py"), *args, "--port", str(port)],
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the demo exited: {(tmp / f'demo-{port}.log').read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise AssertionError("the demo did not serve within 120 s")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("demo")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    photo = np.stack(
        [120 + 80 * np.sin(xx / 17), 100 + 60 * np.cos(yy / 11), 90 + 40 * np.sin((xx + yy) / 23)], axis=-1
    )
    Image.fromarray(np.clip(photo + rng.normal(0, 6, photo.shape), 0, 255).astype(np.uint8)).save(folder / "photo.png")
    layer = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    layer[STROKE] = (255, 0, 0, 255)  # a brush stroke as the editor sends it: painted pixels opaque
    Image.fromarray(layer).save(folder / "stroke.png")
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 4), np.uint8)).save(folder / "empty.png")
    (folder / "notes.png").write_text("not an image")
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(folder / "large.png")
    return {
        "folder": folder,
        "photo": folder / "photo.png",
        "stroke": folder / "stroke.png",
        "empty": folder / "empty.png",
        "notes": folder / "notes.png",
        "large": folder / "large.png",
        "weights": save_tiny_weights(folder / "deeperaser-tiny.safetensors", "deeperaser"),
    }


@pytest.fixture(scope="module")
def server(files):
    process, url = start_demo(
        files["folder"], "--model", "deeperaser", "--weights", str(files["weights"]), "--max-pixels", "50000"
    )
    yield url
    process.terminate()
    process.wait(timeout=30)


def editor(background: Path, *layers: Path) -> dict:
    return {
        "background": handle_file(str(background)),
        "layers": [handle_file(str(p)) for p in layers],
        "composite": None,
    }


def changed_pixels(result: str | Path, reference: Path) -> np.ndarray:
    with Image.open(result) as out, Image.open(reference) as ref:
        assert out.size == ref.size == (WIDTH, HEIGHT)
        return (np.asarray(out.convert("RGB")) != np.asarray(ref.convert("RGB"))).any(axis=-1)


def test_a_drawn_mask_changes_the_image_only_inside_it(server, files):
    client = Client(server, verbose=False)
    (before, after), download = client.predict(editor(files["photo"], files["stroke"]), None, 0, 0, api_name="/predict")
    changed = changed_pixels(download, files["photo"])
    inside = np.zeros_like(changed)
    inside[STROKE] = True
    assert (
        changed[inside].mean() > 0.5
    )  # the model erased inside the stroke (DeepEraser does not paste by itself: the demo does)
    assert not changed[~inside].any()  # and nothing else changed
    assert not changed_pixels(before, files["photo"]).any() and (changed_pixels(after, files["photo"]) == changed).all()
    # the same mask uploaded as a file instead of drawn, grown by 3 px: changes reach 3 px further, no more
    mask = files["folder"] / "mask.png"
    Image.fromarray((np.asarray(Image.open(files["stroke"]))[:, :, 3] > 0).astype(np.uint8) * 255).save(mask)
    _, download = client.predict(editor(files["photo"]), handle_file(str(mask)), 0, 3, api_name="/predict")
    grown = np.zeros_like(changed)
    grown[STROKE[0].start - 3 : STROKE[0].stop + 3, STROKE[1].start - 3 : STROKE[1].stop + 3] = True
    changed = changed_pixels(download, files["photo"])
    assert not changed[~grown].any() and changed[grown & ~inside].any()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no mask", "no mask: draw over the text to erase"),
        ("bad mask file", "cannot read image"),
        ("too large", "set a tile size under Options"),
    ],
)
def test_bad_input_is_answered_in_the_page(server, files, case, message):
    client = Client(server, verbose=False)
    arguments = {
        "no mask": (editor(files["photo"], files["empty"]), None, 0, 0),
        "bad mask file": (editor(files["photo"]), handle_file(str(files["notes"])), 0, 0),
        "too large": (editor(files["large"], files["empty"]), None, 0, 0),
    }[case]
    with pytest.raises(AppError, match=message):
        client.predict(*arguments, api_name="/predict")


def test_tiling_runs_images_above_the_limit(server, files):
    large = files["folder"] / "large-stroke.png"
    layer = np.zeros((300, 300, 4), np.uint8)
    layer[100:140, 50:250] = 255
    Image.fromarray(layer).save(large)
    _, download = Client(server, verbose=False).predict(
        editor(files["large"], large), None, 128, 0, api_name="/predict"
    )
    with Image.open(download) as out:
        assert out.size == (300, 300)


def test_restoration_page_offers_the_degradations(tmp_path):
    """A model with another condition (PIP's degradation; blind with its sensor) gets its own inputs."""
    from rezoo.demo import BLIND, Demo, build_app, launch
    from rezoo.predictor import Predictor

    weights = save_tiny_weights(tmp_path / "pip-tiny.safetensors", "pip", sensor=True)
    demo = Demo(Predictor("pip", str(weights)), out_dir=tmp_path / "out")
    app = build_app(demo)
    port = free_port()
    launch(app, port=port, block=False, allowed=[demo.out_dir])
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        photo = tmp_path / "rain.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photo)
        (_, blind), _ = client.predict(handle_file(str(photo)), BLIND, 0, api_name="/predict")
        (_, rain), _ = client.predict(handle_file(str(photo)), "rain", 0, api_name="/predict")
        with Image.open(blind) as a, Image.open(rain) as b:
            assert a.size == b.size == (56, 40)
            assert not np.array_equal(np.asarray(a), np.asarray(b))  # the chosen degradation reaches the model
    finally:
        app.close()


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch, capsys):
    import builtins

    from rezoo.cli import main

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    monkeypatch.delitem(sys.modules, "gradio", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--model", "deeperaser"])
    assert exit_info.value.code == 2 and 'pip install -e ".[demo]"' in capsys.readouterr().err


def chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.browser
@pytest.mark.skipif(
    chromium() is None, reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
)
def test_page_in_headless_chromium_draws_a_stroke_and_shows_the_result(server, files, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.binary_location = browser
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#image input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(files["photo"]))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#image canvas"))
        time.sleep(2)  # the editor draws the uploaded image
        canvas = driver.find_elements(By.CSS_SELECTOR, "#image canvas")[-1]
        stroke = ActionChains(driver).move_to_element_with_offset(canvas, -60, 0).click_and_hold()
        for dx in range(-50, 70, 10):  # a horizontal stroke across the middle of the image
            stroke = stroke.move_to_element_with_offset(canvas, dx, 0)
        stroke.release().perform()
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#download a[href]"))
        assert len(driver.find_elements(By.CSS_SELECTOR, "#result img")) == 2  # before and after
        href = driver.find_element(By.CSS_SELECTOR, "#download a[href]").get_attribute("href")
        result = tmp_path / "result.png"
        result.write_bytes(urllib.request.urlopen(href, timeout=10).read())
        changed = changed_pixels(result, files["photo"])
        rows = np.flatnonzero(changed.any(axis=1))
        assert (
            changed.any() and rows.min() > 15 and rows.max() < HEIGHT - 15
        )  # only along the stroke, across the middle
        driver.save_screenshot(str(tmp_path / "page.png"))
        with Image.open(tmp_path / "page.png") as shot:
            assert shot.size[0] >= 1000 and np.asarray(shot.convert("L")).std() > 10
    finally:
        driver.quit()
