"""HTML report: PNG encoder, colour maps, SVG plot, self-contained page, headless-Chromium rendering."""

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from kcross_metric import KCross
from kcross_metric.data.phantom import make_pair
from kcross_metric.errors import ConfigError, OutputExistsError, ShapeError
from kcross_metric.report import (
    GENERATOR,
    ReportEntry,
    build_report,
    encode_png,
    is_report_file,
    png_data_uri,
    write_report,
)
from kcross_metric.report.png import (
    INFERNO_ANCHORS,
    colormap_rgb,
    gray_rgb,
    overlay_mask,
    to_display,
)
from kcross_metric.report.svg import slice_score_plot


def _decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        return np.asarray(im)


@pytest.mark.parametrize("shape, mode", [((7, 5), "L"), ((3, 9, 3), "RGB"), ((1, 1), "L")])
def test_png_round_trip(shape, mode):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
    png = encode_png(arr)
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == mode and im.size == (shape[1], shape[0])
    np.testing.assert_array_equal(_decode(png), arr)
    assert encode_png(arr.copy()) == png  # same pixels, same bytes: reports are reproducible
    assert png_data_uri(arr) == "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def test_png_of_a_strided_view():
    arr = np.random.default_rng(1).integers(0, 256, size=(8, 10, 3), dtype=np.uint8)
    view = arr[::-1, ::3]  # negative and non-unit strides, as from to_display or slicing
    np.testing.assert_array_equal(_decode(encode_png(view)), view)


def test_png_refuses_bad_arrays():
    with pytest.raises(ShapeError):
        encode_png(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ShapeError):
        encode_png(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(ShapeError):
        encode_png(np.zeros((0, 4), dtype=np.uint8))


def test_colour_maps_and_overlay():
    ramp = np.array([[0.0, 0.5, 1.0, 2.0]])
    g = gray_rgb(ramp)
    assert g[0, :, 0].tolist() == [0, 128, 255, 255] and (g[..., 0] == g[..., 2]).all()
    c = colormap_rgb(ramp, 0.0, 1.0)
    assert c[0, 0].tolist() == INFERNO_ANCHORS[0].tolist() and c[0, 2].tolist() == INFERNO_ANCHORS[-1].tolist()
    assert (colormap_rgb(ramp, 1.0, 1.0) == INFERNO_ANCHORS[0]).all()  # an empty range maps to the darkest colour
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    base = gray_rgb(np.full((5, 5), 0.5))
    out = overlay_mask(base, mask, color=(255, 0, 0), alpha=0.5)
    assert out[0, 0].tolist() == base[0, 0].tolist()  # outside untouched
    assert out[1, 1].tolist() == [255, 0, 0]  # outline opaque
    assert out[2, 2].tolist() == [192, 64, 64]  # interior tinted: 0.5*128 + 0.5*(255, 0, 0)
    assert to_display(np.array([[1, 2], [3, 4]])).tolist() == [[3, 4], [1, 2]]  # anterior up


def test_slice_plot_gaps_and_highlights():
    svg = slice_score_plot([0.5, float("nan"), 0.7, 0.2, 0.9], lesion=[False, False, True, True, False], highlight=[3])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 1  # slice 0 alone, then 2-4 joined: the NaN is a gap
    assert svg.count('r="2.2"') == 4 and svg.count('stroke="#e08000"') == 2
    assert svg.count('r="4.5"') == 1


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.external = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        for key in ("src", "href"):
            v = a.get(key) or ""
            if v and not v.startswith(("data:", "#")):
                self.external.append((tag, v))
        if tag in ("script", "link", "iframe"):
            self.external.append((tag, a))


@pytest.fixture(scope="module")
def report_html():
    metric = KCross.untrained(seed=0)
    fake, real, source, mask = (t[:, :, 4:10] for t in make_pair((16, 48, 48), seed=0, blur_sigma=1.0, lesion_fade=0.9))
    ex = metric.explain(fake, real, source, mask)
    ex2d = metric.explain(fake[:, :, 3], real[:, :, 3])
    entries = [
        ReportEntry("case <1>", ex, fake, real, source, {"psnr": 21.5}),
        ReportEntry("slice only", ex2d, fake[:, :, 3], real[:, :, 3], None),
    ]
    return build_report(entries, worst_n=2)


def test_report_is_self_contained_and_every_img_is_a_png(report_html):
    parser = _Imgs()
    parser.feed(report_html)
    assert parser.external == []
    # case <1>: 2 worst slices x 6 images; slice only: 1 slice x 5 images (no source)
    assert len(parser.srcs) == 2 * 6 + 5
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        arr = _decode(base64.b64decode(src.split(",", 1)[1]))
        assert arr.shape[0] == 48 and arr.shape[1] == 48
    assert f'<meta name="generator" content="{GENERATOR}">' in report_html
    assert "case &lt;1&gt;" in report_html and "<1>" not in report_html  # names are escaped
    assert report_html.count("<svg") == 2 and "21.5000" in report_html


def test_write_report_never_replaces_without_overwrite(report_html, tmp_path):
    foreign = tmp_path / "notes.html"
    foreign.write_text("<html>mine</html>")
    with pytest.raises(OutputExistsError):
        write_report(foreign, report_html)
    assert foreign.read_text(encoding="utf-8") == "<html>mine</html>"
    own = write_report(tmp_path / "r.html", report_html)
    assert is_report_file(own)
    with pytest.raises(OutputExistsError):  # not even an earlier report
        write_report(own, report_html.replace("K-CROSS report", "again"))
    write_report(own, report_html.replace("K-CROSS report", "again"), overwrite=True)
    assert "again" in own.read_text(encoding="utf-8")
    write_report(foreign, report_html, overwrite=True)
    assert is_report_file(foreign)
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(tmp_path / "missing" / "r.html", report_html)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(report_html, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed (apt-get install -y chromium) - rendering not checked")
    page = write_report(tmp_path / "report.html", report_html)
    shot = tmp_path / "shot.png"
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
        page.as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=180, check=False)  # chromium's exit code varies; the screenshot is checked
    assert shot.exists() and shot.stat().st_size > 0, "chromium wrote no screenshot"
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB")).astype(np.int32)
    assert rgb.shape[:2] == (1600, 1200)
    gray = rgb.mean(axis=2)
    assert (gray < 128).mean() > 0.03  # text, tables and the embedded images: not a blank page
    assert gray.std() > 20
    # the purple mid-tones of the error maps' colour map appear only if the PNGs were decoded and
    # painted (a page whose images are broken has almost none: 3 pixels when tried)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    purple = (r > 70) & (r < 190) & (g < 70) & (b > 70) & (b < 140)
    assert purple.sum() > 2000
    assert re.search(r"<img [^>]*src=\"data:image/png;base64,", report_html)
