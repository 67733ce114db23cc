"""Shaded pictures of occupancy grids: one volume to an RGB array, many volumes to a PNG grid.

The view is a fixed 2:1 dimetric projection (the classic pixel-art isometric view) seen from the
(+x, -y, +z) side, so the top (+z), +x and -y faces of the voxels are visible. Every exposed face is
drawn as an integer-pixel sprite, so voxels tile without gaps at any resolution; a per-pixel depth
buffer picks the nearest face, faces are shaded by their normal (Lambert) and dimmed with depth, and
the grid's floor is drawn as a light rhombus with each occupied column's shadow on it, so that
position, height and scale read at a glance.
Volumes are indexed ``[x, y, z]`` with +z up; a voxel is occupied where its value is above the
threshold. Pure numpy; Pillow only writes the PNG (and draws titles).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from voxgan.atomic import atomic_path

BACKGROUND = np.array([1.0, 1.0, 1.0])
FLOOR = np.array([0.90, 0.91, 0.93])
SHADOW = np.array([0.76, 0.77, 0.80])
BASE_COLOUR = np.array([0.36, 0.58, 0.86])
# Face brightness by normal: light from above and from the viewer's left.
FACE_LIGHT = {"top": 1.0, "left": 0.78, "right": 0.58}
TILE_PIXELS = 192  # about the width of one rendered volume


def sprite_scale(resolution: int) -> tuple[int, int]:
    """Pixel sizes for one voxel at ``resolution``: (w, h), the half width of a top face and the side height.

    ``w`` is even so that every voxel corner lands on an integer pixel.
    """
    w = max(2, 2 * round(TILE_PIXELS / (4 * resolution)))
    return w, w


def projection(w: int, h: int) -> np.ndarray:
    """The (2, 3) matrix from view coordinates (a, b, c) to screen pixels (X right, Y down).

    View coordinates are a = x, b = R - 1 - y, c = z; the camera looks along -(1, 1, w/h).
    """
    return np.array([[w, -w, 0.0], [w / 2, w / 2, -h]])


@lru_cache(maxsize=16)
def face_sprites(w: int, h: int) -> dict:
    """For each visible face of the unit cube at the origin, the pixels it covers.

    Returns ``{face: (dx (P,) int, dy (P,) int, depth (P,) float, border (P,) bool)}`` for faces
    "top" (+c), "right" (+a) and "left" (+b): pixel offsets from the projection of the cube's
    origin, the depth of the face point under each pixel centre (larger is nearer the camera) and
    whether the pixel lies on the face's border.
    """
    project = projection(w, h)
    view = np.array([1.0, 1.0, w / h])  # the camera sits at +infinity along this direction
    faces = {
        "top": (np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),
        "right": (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])),
        "left": (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])),
    }
    sprites = {}
    for name, (origin, edge_s, edge_t) in faces.items():
        corners = np.array([origin, origin + edge_s, origin + edge_t, origin + edge_s + edge_t]) @ project.T
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
        ys, xs = np.mgrid[y0:y1, x0:x1]
        centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1) - project @ origin
        span = np.stack([project @ edge_s, project @ edge_t], axis=1)  # (2, 2)
        st = np.linalg.solve(span, centres.T).T  # (P, 2) face coordinates in [0, 1)
        inside = np.all((st >= 0) & (st < 1), axis=1)
        st = st[inside]
        points = origin + st[:, :1] * edge_s + st[:, 1:] * edge_t
        margin = np.array([1.0 / max(w, 1), 1.0 / max(h if name != "top" else w, 1)])
        border = np.any((st < margin) | (st > 1 - margin), axis=1)
        sprites[name] = (xs.ravel()[inside], ys.ravel()[inside], points @ view, border)
    return sprites


def image_size(resolution: int) -> tuple[int, int]:
    """(height, width) in pixels of one rendered volume at ``resolution``."""
    w, h = sprite_scale(resolution)
    return resolution * (w + h) + 2, 2 * resolution * w + 2


def view_coordinates(occupancy: np.ndarray) -> np.ndarray:
    """Flip y so that the camera looks along -(1, 1, 1) in view coordinates.

    occupancy : (R, R, R) bool indexed [x, y, z]  ->  (R, R, R) bool indexed [a, b, c].
    """
    return occupancy[:, ::-1, :]


@lru_cache(maxsize=8)
def floor_cells(resolution: int) -> np.ndarray:
    """(H, W) int: for each pixel, the floor cell ``a * R + b`` under it (z = 0), or -1 off the floor."""
    w, h = sprite_scale(resolution)
    height, width = image_size(resolution)
    origin_x, origin_y = origin_pixel(resolution)
    project = projection(w, h)[:, :2]
    ys, xs = np.mgrid[0:height, 0:width]
    centres = np.stack([xs.ravel() + 0.5 - origin_x, ys.ravel() + 0.5 - origin_y])
    a, b = np.floor(np.linalg.solve(project, centres)).astype(np.int64)
    on_floor = (a >= 0) & (a < resolution) & (b >= 0) & (b < resolution)
    return np.where(on_floor, a * resolution + b, -1).reshape(height, width)


def floor_colours(grid: np.ndarray) -> np.ndarray:
    """The background with the floor and each occupied column's shadow on it.

    grid : (R, R, R) bool in view coordinates  ->  (H * W, 3) float RGB.
    """
    cells = floor_cells(len(grid)).ravel()
    shadow = np.append(grid.any(axis=2).ravel(), False)[cells]  # index -1 picks the appended False
    colours = np.where((cells >= 0)[:, None], FLOOR, BACKGROUND)
    colours[shadow] = SHADOW
    return colours


def origin_pixel(resolution: int) -> tuple[int, int]:
    """Pixel position of view point (0, 0, 0) so that the whole grid fits in the image."""
    w, h = sprite_scale(resolution)
    return resolution * w + 1, resolution * h + 1


def occupied(volume: np.ndarray, threshold: float) -> np.ndarray:
    """(R, R, R) bool or float  ->  (R, R, R) bool: bool volumes as they are, others ``> threshold``."""
    volume = np.asarray(volume)
    return volume if volume.dtype == bool else volume > threshold


def render_volume(volume: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Render one volume as a shaded picture.

    Parameters
    ----------
    volume : (R, R, R) bool, or float in [0, 1], indexed [x, y, z] with +z up.
    threshold : a float voxel is occupied where its value is above this.

    Returns
    -------
    (H, W, 3) uint8 RGB image; see :func:`image_size` for H and W.
    """
    occupancy = occupied(volume, threshold)
    assert occupancy.ndim == 3 and len(set(occupancy.shape)) == 1, occupancy.shape
    resolution = occupancy.shape[0]
    w, h = sprite_scale(resolution)
    height, width = image_size(resolution)
    origin_x, origin_y = origin_pixel(resolution)
    grid = view_coordinates(occupancy)
    padded = np.pad(grid, ((0, 1), (0, 1), (0, 1)))
    exposed = {
        "top": grid & ~padded[:-1, :-1, 1:],
        "right": grid & ~padded[1:, :-1, :-1],
        "left": grid & ~padded[:-1, 1:, :-1],
    }
    project = projection(w, h)
    view = np.array([1.0, 1.0, w / h])
    depth_range = float(view @ np.full(3, resolution + 1.0))
    pixels, depths, shades = [], [], []
    for name, (dx, dy, depth, border) in face_sprites(w, h).items():
        cells = np.argwhere(exposed[name])  # (F, 3) view coordinates a, b, c
        if len(cells) == 0:
            continue
        screen = np.rint(cells @ project.T).astype(np.int64)  # exact: w even, h integer
        xs = origin_x + screen[:, :1] + dx  # (F, P)
        ys = origin_y + screen[:, 1:] + dy
        depth_at = (cells @ view)[:, None] + depth  # (F, P)
        cue = 0.55 + 0.45 * depth_at / depth_range
        edge = np.where(border, 0.82, 1.0) if w >= 4 else np.ones_like(depth)
        pixels.append((ys * width + xs).ravel())
        depths.append(depth_at.ravel())
        shades.append((FACE_LIGHT[name] * cue * edge).ravel())
    image = floor_colours(grid)
    if pixels:
        pixel, depth, shade = np.concatenate(pixels), np.concatenate(depths), np.concatenate(shades)
        nearest = np.full(height * width, -np.inf)
        np.maximum.at(nearest, pixel, depth)
        front = depth == nearest[pixel]
        image[pixel[front]] = shade[front, None] * BASE_COLOUR
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(height, width, 3)


def grid_shape(count: int, ncols: int | None = None) -> tuple[int, int]:
    """(rows, columns) of a picture grid for ``count`` tiles: about square unless ``ncols`` is given."""
    columns = ncols or max(1, math.ceil(math.sqrt(count)))
    columns = max(1, min(columns, max(count, 1)))
    return max(1, math.ceil(count / columns)), columns


def compose_grid(images: list[np.ndarray], ncols: int | None = None, gap: int = 4) -> np.ndarray:
    """Lay equal-size (H, W, 3) uint8 images out in rows: -> (rows*(H+gap)+gap, cols*(W+gap)+gap, 3)."""
    height, width, _ = images[0].shape
    rows, columns = grid_shape(len(images), ncols)
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255, np.uint8)
    for index, image in enumerate(images):
        assert image.shape == (height, width, 3), image.shape
        row, column = divmod(index, columns)
        top, left = gap + row * (height + gap), gap + column * (width + gap)
        canvas[top : top + height, left : left + width] = image
    return canvas


def render_volumes(
    volumes: np.ndarray,
    path: str | os.PathLike,
    *,
    ncols: int | None = None,
    titles: list[str] | None = None,
    threshold: float = 0.5,
) -> None:
    """Write a PNG grid of shaded pictures of ``volumes``, atomically.

    Parameters
    ----------
    volumes : (N, R, R, R) bool, or float in [0, 1], indexed [x, y, z] with +z up.
    path : the PNG file to write (its folder must exist).
    ncols : tiles per row; about square by default.
    titles : N short captions, drawn above the tiles.
    threshold : a float voxel is occupied where its value is above this.

    Example
    -------
    >>> render_volumes(np.ones((4, 16, 16, 16), bool), "grid.png")  # doctest: +SKIP
    """
    volumes = np.asarray(volumes)
    if volumes.ndim == 5 and volumes.shape[1] == 1:  # (N, 1, R, R, R) as models produce them
        volumes = volumes[:, 0]
    assert volumes.ndim == 4 and len(volumes) > 0, volumes.shape
    if titles is not None:
        assert len(titles) == len(volumes), (len(titles), len(volumes))
    images = [render_volume(volume, threshold=threshold) for volume in volumes]
    with atomic_path(Path(path), suffix=".png") as tmp:
        save_grid(images, titles, tmp, ncols)


def save_grid(images: list[np.ndarray], titles: list[str] | None, path: str, ncols: int | None) -> None:
    """Write the grid of (H, W, 3) uint8 ``images`` as a PNG at ``path``, with a caption above each tile
    when ``titles`` are given (Pillow, which matplotlib requires: a fraction of matplotlib's start-up)."""
    from PIL import Image, ImageDraw, ImageFont

    if titles is None:
        Image.fromarray(compose_grid(images, ncols)).save(path, format="png")
        return
    caption, gap = 18, 4
    height, width, _ = images[0].shape
    spaced = [np.concatenate([np.full((caption, width, 3), 255, np.uint8), image]) for image in images]
    picture = Image.fromarray(compose_grid(spaced, ncols, gap))
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default(size=11)
    columns = grid_shape(len(images), ncols)[1]
    for index, title in enumerate(titles):
        row, column = divmod(index, columns)
        x = gap + column * (width + gap) + width / 2
        y = gap + row * (height + caption + gap) + caption / 2
        draw.text((x, y), str(title)[: max(4, width // 6)], fill=(0, 0, 0), font=font, anchor="mm")
    picture.save(path, format="png")
