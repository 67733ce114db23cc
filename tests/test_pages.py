"""voxgan.pages: one self-contained page of volumes, opened from disk in headless Chromium: every volume
drawn (more than a browser's 16 WebGL contexts), nothing requested, no console error, a drag turns one."""

import re

import numpy as np

from tests.browser import captions, check_page, page_volumes, shape_pixels
from tests.results.sources import ball, synthetic_shapes
from voxgan import shards
from voxgan.pages import THREE_VERSION, Cell, Gallery, html_table, line_chart, pack_volume, write_page


def test_volumes_are_packed_as_the_shards_pack_them_and_read_back(tmp_path):
    volumes, _ = synthetic_shapes(3)
    odd = np.zeros((8, 8, 8), bool)
    odd[1, 2, 3] = odd[7, 7, 7] = True
    assert pack_volume(volumes[0]) == __import__("base64").b64encode(shards.pack(volumes[:1])[0]).decode()
    path = write_page(tmp_path / "p.html", "t", [Gallery("g", [Cell(v) for v in [*volumes, odd]])])
    assert all(np.array_equal(a, b) for a, b in zip(page_volumes(path), [*volumes, odd], strict=True))


def test_a_page_is_one_file_that_may_load_nothing(tmp_path):
    volumes, _ = synthetic_shapes(64)
    path = write_page(
        tmp_path / "p.html", "64 <volumes>", [Gallery("all", [Cell(v, "a & b") for v in volumes])]
    )
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_size < 1_000_000  # 64 volumes at 16³: three.js (690 KB) and 44 KB of volumes
    assert "default-src 'none'" in text  # the Content-Security-Policy forbids every request
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text)
    assert "Copyright © 2010-2024 three.js authors" in text and "Permission is hereby granted" in text
    assert f'const t="{THREE_VERSION.split(".")[1]}"' in text  # three.js's REVISION: the pinned release
    assert "<title>64 &lt;volumes&gt;</title>" in text and "a &amp; b" in text


def test_a_chart_leaves_out_missing_values_and_a_table_escapes_its_cells():
    chart = line_chart("loss", {"a": [(0, 1.0), (10, None), (20, float("nan")), (30, 0.5)], "b": [(5, None)]})
    assert (
        chart.count("<polyline") == 1
        and chart.count("<circle") == 2
        and ">a<" in chart
        and ">b<" not in chart
    )
    assert line_chart("nothing", {"a": [(0, None)]}) == ""
    assert "<td>&lt;b&gt;</td>" in html_table(["x"], [["<b>"]])


def test_more_volumes_than_webgl_contexts_all_render_offline_and_an_empty_one_shows_none(browser, tmp_path):
    volumes, _ = synthetic_shapes(70)
    cells = [Cell(v, f"v{i}") for i, v in enumerate(volumes)]
    cells.append(Cell(np.zeros((16, 16, 16), bool), "empty"))
    cells.append(Cell(ball(32, 12.0, (16, 16, 12)), "a 32³ ball"))  # resolutions may differ on a page
    path = write_page(
        tmp_path / "many.html", "many", [Gallery("first", cells[:40]), Gallery("more", cells[40:])]
    )
    page = check_page(browser, path, len(cells), empty={70})
    assert captions(page)[-1] == "a 32³ ball"
    page.close()


def test_a_drag_turns_the_volume_under_the_pointer_and_no_other(browser, tmp_path):
    tall = np.zeros((16, 16, 16), bool)
    tall[4:12, 6:10, 0:15] = True  # a slab: turning it changes its outline
    path = write_page(tmp_path / "drag.html", "drag", [Gallery("g", [Cell(tall, "a"), Cell(tall, "b")])])
    page = check_page(browser, path, 2)
    page.scroll_to(0)
    boxes = {index: box for index, *box in page.cell_boxes()}

    def crop(image, index):
        left, top, right, bottom = boxes[index]
        return image[top:bottom, left:right].astype(int)

    before = page.screenshot()
    assert np.array_equal(crop(before, 0), crop(before, 1))  # the same volume, the same view
    left, top, right, bottom = boxes[0]
    centre = ((left + right) / 2, (top + bottom) / 2)
    page.drag(centre, (centre[0] + 70, centre[1] + 25))
    after = page.screenshot()
    assert np.abs(crop(after, 0) - crop(before, 0)).mean() > 2  # the dragged volume turned
    assert np.array_equal(crop(after, 1), crop(before, 1))  # the other did not
    assert shape_pixels(crop(after, 0).astype(np.uint8)) > 30
    assert page.console_errors() == []
    page.close()
