"""The built-in ``shapes`` dataset: procedural furniture-and-object meshes, no download needed.

Each class builds one mesh from overlapping closed primitives (boxes, cylinders, cones, spheres, surfaces
of revolution) with randomised proportions, part counts and small rotations. Every mesh stands on z = 0
with +z up (the ModelNet convention), centred on the z axis; backrests, headboards and the backs of
shelves and monitors are on the -y side, mug handles on +x. Thin parts (legs, handles, shelves, walls)
are at least :data:`MIN_PART_FRACTION` of the shape's largest extent (round ones :data:`ROUND_FACTOR`
times more), so they cover voxel centres at 16³.

The set is written in ModelNet layout, ``<class>/{train,test}/<class>_<NNNN>.<ext>`` (test numbers
continue after the train numbers, as in ModelNet), rotating OFF, OBJ, binary STL and binary PLY across
files; half the OFF files carry ModelNet's header quirk (``OFF`` fused with the counts: ``OFF490 518 0``).
The writers are our own, with fixed float formatting, so the same seed gives byte-identical files. Each
file's random stream depends only on ``(seed, class, split, index within the split)``: a smaller set is
a prefix of a larger one.

The whole folder appears at once: it is built in a hidden sibling folder and renamed into place, so an
interrupted run never leaves a half-filled dataset behind.

This module is longer than most (about 700 lines) because it is a catalogue: ten class builders, each
read on its own, next to the rules they share and the writers that put them on disk; the primitives they
are built from live in :mod:`voxgan.ingest.primitives`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxgan.errors import VoxganError
from voxgan.ingest.primitives import (
    ROD_SEGMENTS,
    Mesh,
    align_z,
    box,
    combine,
    cylinder,
    frustum,
    moved,
    revolve,
    rotation,
    sphere,
    torus,
    transform,
)

CLASSES: tuple[str, ...] = (
    "bed",
    "bottle",
    "chair",
    "lamp",
    "monitor",
    "mug",
    "shelf",
    "sofa",
    "stool",
    "table",
)
SPLITS: tuple[str, ...] = ("train", "test")
FORMATS: tuple[str, ...] = ("off", "obj", "stl", "ply")
UP_AXIS = "z"
DEFAULT_TRAIN_PER_CLASS = 100
DEFAULT_TEST_PER_CLASS = 20
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    name: {"train": DEFAULT_TRAIN_PER_CLASS, "test": DEFAULT_TEST_PER_CLASS} for name in CLASSES
}
MIN_PART_FRACTION = 0.09  # thinnest part / largest extent: 1.35 voxels when the largest extent spans 15
ROUND_FACTOR = 1.25  # a round bar is this much wider than a square one: it must reach a voxel centre at 0.71
MAX_TURN_DEGREES = 6.0  # each whole shape turns about z by at most this much


# ---------------------------------------------------------------------------------------------------------
# Assembly: parts from voxgan.ingest.primitives, kept thick enough for 16³.


def rod(start, end, width: float, round_section: bool = True) -> Mesh:
    """A bar from ``start`` to ``end`` (3,): square of side ``width``, or round and ROUND_FACTOR × wider."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    length = float(np.linalg.norm(end - start))
    if round_section:
        part = cylinder(ROUND_FACTOR * width / 2, length, ROD_SEGMENTS)
    else:
        part = box((width, width, length), (0, 0, length / 2))
    return transform(part, align_z(end - start), start)


def finish(parts: list[Mesh], rng: np.random.Generator) -> Mesh:
    """Combine the parts, turn the shape a little about z, stand it on z = 0 centred on the z axis.

    Returns vertices (V, 3) float64 and faces (F, 3) int64.
    """
    vertices, faces = combine(parts)
    vertices = vertices @ rotation("z", rng.uniform(-MAX_TURN_DEGREES, MAX_TURN_DEGREES)).T
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])
    assert vertices.shape[1] == 3 and faces.shape[1] == 3
    return vertices, faces.astype(np.int64)


def thinnest(extent: float) -> float:
    """The smallest part thickness allowed in a shape whose largest extent is ``extent``."""
    return MIN_PART_FRACTION * extent


# ---------------------------------------------------------------------------------------------------------
# The classes: one builder each, ``make_<class>(rng) -> (vertices (V, 3), faces (F, 3))``.


def make_chair(rng: np.random.Generator) -> Mesh:
    """Four legs, a seat, a backrest at -y (a panel, or posts and slats), sometimes arms and stretchers."""
    width, depth = rng.uniform(0.40, 0.56), rng.uniform(0.38, 0.52)
    seat_z, back_height = rng.uniform(0.40, 0.50), rng.uniform(0.35, 0.55)
    thin = thinnest(max(width, depth, seat_z + back_height) * 1.05)
    seat_t, leg = rng.uniform(thin, 1.5 * thin), rng.uniform(thin, 1.4 * thin)
    round_legs = rng.random() < 0.4
    parts = [box((width, depth, seat_t), (0, 0, seat_z - seat_t / 2))]
    inset = rng.uniform(0.0, 0.03)
    splay = rng.uniform(0.0, 0.03)
    leg_top = seat_z - seat_t / 2
    xs, ys = width / 2 - leg / 2 - inset, depth / 2 - leg / 2 - inset
    for sx in (-1, 1):
        for sy in (-1, 1):
            top = (sx * xs, sy * ys, leg_top)
            foot = (sx * (xs + splay), sy * (ys + splay), 0.0)
            parts.append(rod(foot, top, leg, round_legs))
    if rng.random() < 0.3:
        z = rng.uniform(0.12, 0.25) * seat_z
        for sx in (-1, 1):
            parts.append(box((thin, 2 * ys, thin), (sx * (xs + splay / 2), 0, z)))
    back_t = rng.uniform(thin, 1.3 * thin)
    back_y = -depth / 2 + back_t / 2
    back_parts = []
    if rng.random() < 0.5:
        panel_w = width * rng.uniform(0.8, 1.0)
        back_parts.append(box((panel_w, back_t, back_height + seat_t), (0, back_y, seat_z + back_height / 2)))
    else:
        post_x = width / 2 - leg / 2
        for sx in (-1, 1):
            back_parts.append(
                box((leg, back_t, back_height + seat_t), (sx * post_x, back_y, seat_z + back_height / 2))
            )
        rail_h = rng.uniform(1.2 * thin, 2.5 * thin)
        back_parts.append(box((width, back_t, rail_h), (0, back_y, seat_z + back_height - rail_h / 2)))
        slats = int(rng.integers(1, 4))
        for x in np.linspace(-post_x, post_x, slats + 2)[1:-1]:
            back_parts.append(box((thin, back_t * 0.9, back_height), (x, back_y, seat_z + back_height / 2)))
    tilt = rng.uniform(0.0, 12.0)
    pivot = (0.0, -depth / 2, seat_z)
    parts += [transform(p, rotation("x", tilt), pivot=pivot) for p in back_parts]
    if rng.random() < 0.25:
        arm_z = seat_z + rng.uniform(0.18, 0.25)
        for sx in (-1, 1):
            x = sx * (width / 2 - thin / 2)
            parts.append(box((thin, depth * 0.85, thin), (x, 0.0, arm_z)))
            parts.append(
                box((thin, thin, arm_z - seat_z + thin), (x, depth / 2 - thin, (arm_z + seat_z) / 2))
            )
    return finish(parts, rng)


def make_table(rng: np.random.Generator) -> Mesh:
    """A rectangular top on four legs (sometimes an apron or a low shelf), or a round top on a pedestal."""
    height = rng.uniform(0.68, 0.78)
    parts = []
    if rng.random() < 0.3:
        diameter = rng.uniform(0.75, 1.2)
        thin = thinnest(diameter)
        top_t = rng.uniform(thin, 1.4 * thin)
        parts.append(moved(cylinder(diameter / 2, top_t), (0, 0, height - top_t)))
        column = rng.uniform(ROUND_FACTOR * thin, 2.0 * thin)
        parts.append(cylinder(column / 2, height - top_t / 2, ROD_SEGMENTS))
        if rng.random() < 0.5:
            parts.append(cylinder(diameter * rng.uniform(0.22, 0.32), rng.uniform(thin, 1.3 * thin)))
        else:
            feet = int(rng.integers(3, 5))
            reach = diameter * rng.uniform(0.25, 0.35)
            for k in range(feet):
                angle = 2 * np.pi * k / feet
                end = (reach * np.cos(angle), reach * np.sin(angle), thin / 2)
                parts.append(rod((0, 0, thin / 2), end, thin, round_section=False))
        return finish(parts, rng)
    width = rng.uniform(0.8, 1.6)
    depth = width * rng.uniform(0.5, 0.8)
    thin = thinnest(width)
    top_t, leg = rng.uniform(thin, 1.4 * thin), rng.uniform(thin, 1.3 * thin)
    parts.append(box((width, depth, top_t), (0, 0, height - top_t / 2)))
    inset = rng.uniform(0.0, 0.06)
    xs, ys = width / 2 - leg / 2 - inset, depth / 2 - leg / 2 - inset
    round_legs = rng.random() < 0.35
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(
                rod((sx * xs, sy * ys, 0.0), (sx * xs, sy * ys, height - top_t / 2), leg, round_legs)
            )
    if rng.random() < 0.4:
        apron_h = rng.uniform(1.2 * thin, 2.0 * thin)
        z = height - top_t - apron_h / 2 + 0.01
        for sy in (-1, 1):
            parts.append(box((2 * xs, thin, apron_h), (0, sy * ys, z)))
        for sx in (-1, 1):
            parts.append(box((thin, 2 * ys, apron_h), (sx * xs, 0, z)))
    if rng.random() < 0.2:
        shelf_z = rng.uniform(0.12, 0.25) * height
        parts.append(box((2 * xs, 2 * ys, thin), (0, 0, shelf_z)))
    return finish(parts, rng)


def make_stool(rng: np.random.Generator) -> Mesh:
    """A small round or square seat on three or four splayed legs, sometimes with a foot ring."""
    height = rng.uniform(0.45, 0.8)
    seat_r = rng.uniform(0.14, 0.22)
    thin = thinnest(max(height, 2.6 * seat_r) * 1.05)
    seat_t, leg = rng.uniform(thin, 1.6 * thin), rng.uniform(thin, 1.3 * thin)
    parts = []
    legs = int(rng.integers(3, 5))
    if legs == 4 and rng.random() < 0.5:
        side = 2 * seat_r * 0.9
        parts.append(box((side, side, seat_t), (0, 0, height - seat_t / 2)))
    else:
        parts.append(moved(cylinder(seat_r, seat_t), (0, 0, height - seat_t)))
    top_r, foot_r = seat_r * rng.uniform(0.55, 0.75), seat_r * rng.uniform(0.95, 1.25)
    leg_top = height - seat_t / 2
    round_legs = rng.random() < 0.6
    turn = np.pi / 4 if legs == 4 else np.pi / 2
    for k in range(legs):
        angle = turn + 2 * np.pi * k / legs
        direction = np.array([np.cos(angle), np.sin(angle), 0.0])
        parts.append(rod(direction * foot_r, direction * top_r + (0, 0, leg_top), leg, round_legs))
    if rng.random() < 0.5:
        ring_z = rng.uniform(0.25, 0.4) * height
        ring_r = foot_r + (top_r - foot_r) * ring_z / leg_top
        parts.append(moved(torus(ring_r, rng.uniform(0.5, 0.6) * ROUND_FACTOR * thin), (0, 0, ring_z)))
    return finish(parts, rng)


def make_bed(rng: np.random.Generator) -> Mesh:
    """A frame on legs with a mattress, a tall headboard at -y, sometimes a footboard, one or two pillows."""
    length, width = rng.uniform(1.9, 2.2), rng.uniform(0.9, 1.8)
    thin = thinnest(length * 1.05)
    leg_h, frame_t = rng.uniform(thin, 2.0 * thin), rng.uniform(thin, 1.4 * thin)
    mattress_t = rng.uniform(max(thin, 0.15), 0.28)
    board_t = rng.uniform(thin, 1.2 * thin)
    frame_z = leg_h + frame_t / 2
    parts = [box((width, length - board_t, frame_t), (0, board_t / 2, frame_z))]
    leg = rng.uniform(thin, 1.3 * thin)
    xs, ys = width / 2 - leg / 2, length / 2 - leg / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(box((leg, leg, leg_h + frame_t / 2), (sx * xs, sy * ys, (leg_h + frame_t / 2) / 2)))
    mattress_z = leg_h + frame_t + mattress_t / 2 - 0.01
    parts.append(box((width * 0.96, length - 2 * board_t, mattress_t), (0, board_t / 2, mattress_z)))
    head_h = rng.uniform(0.8, 1.2)
    parts.append(box((width, board_t, head_h), (0, -length / 2 + board_t / 2, head_h / 2)))
    if rng.random() < 0.5:
        foot_h = leg_h + frame_t + mattress_t + rng.uniform(0.0, 0.25)
        parts.append(box((width, board_t, foot_h), (0, length / 2 - board_t / 2, foot_h / 2)))
    pillows = 2 if width > 1.3 else 1
    top = leg_h + frame_t + mattress_t - 0.02
    pillow_w = width * 0.96 / pillows - 0.04
    for k in range(pillows):
        x = (k - (pillows - 1) / 2) * (pillow_w + 0.04)
        y = -length / 2 + board_t + 0.3
        pillow_h = rng.uniform(thin, 1.5 * thin)
        if rng.random() < 0.5:
            parts.append(box((pillow_w, 0.4, pillow_h), (x, y, top + pillow_h / 2)))
        else:
            scale = np.diag([pillow_w / 2, 0.2, pillow_h / 2])
            parts.append(transform(sphere(1.0), scale, (x, y, top + pillow_h / 2)))
    return finish(parts, rng)


def make_shelf(rng: np.random.Generator) -> Mesh:
    """A bookcase: two sides, top, bottom, a back at -y (usually), two to five evenly spaced shelves."""
    width, depth, height = rng.uniform(0.6, 1.2), rng.uniform(0.3, 0.45), rng.uniform(0.7, 1.6)
    thin = thinnest(max(width, height) * 1.05)
    board = rng.uniform(thin, 1.2 * thin)
    parts = []
    for sx in (-1, 1):
        parts.append(box((board, depth, height), (sx * (width / 2 - board / 2), 0, height / 2)))
    plinth = rng.uniform(0.0, 1.5 * thin) if rng.random() < 0.3 else 0.0
    inner_w = width - 2 * board + 0.01
    parts.append(box((inner_w, depth, board), (0, 0, height - board / 2)))
    parts.append(box((inner_w, depth, board), (0, 0, plinth + board / 2)))
    if rng.random() < 0.7:
        parts.append(box((width, board, height), (0, -depth / 2 + board / 2, height / 2)))
    most = int((height - plinth - 4 * board) // (3 * board))
    shelves = int(rng.integers(1, max(1, min(most, 5)) + 1))
    for z in np.linspace(plinth + board / 2, height - board / 2, shelves + 2)[1:-1]:
        parts.append(box((inner_w, depth * rng.uniform(0.9, 1.0), board), (0, 0, z)))
    if width > 0.9 and rng.random() < 0.3:
        parts.append(box((board, depth, height - plinth - board), (0, 0, (height + plinth) / 2)))
    return finish(parts, rng)


def make_lamp(rng: np.random.Generator) -> Mesh:
    """A base, a pole and a shade: a standing lamp (shade on top) or a desk lamp (an arm, shade down)."""
    height = rng.uniform(0.5, 1.6)
    parts = []
    if rng.random() < 0.6:
        shade_r = height * rng.uniform(0.14, 0.25)
        thin = thinnest(height * 1.05)
        base_r = height * rng.uniform(0.12, 0.2)
        base_t = rng.uniform(thin, 1.3 * thin)
        if rng.random() < 0.5:
            parts.append(cylinder(base_r, base_t))
        else:
            parts.append(frustum(base_r, base_r * 0.6, base_t * 1.5))
        shade_h = height * rng.uniform(0.2, 0.3)
        pole_top = height - shade_h * rng.uniform(0.3, 0.7)
        parts.append(cylinder(ROUND_FACTOR * rng.uniform(thin, 1.3 * thin) / 2, pole_top, ROD_SEGMENTS))
        top_r = shade_r * rng.uniform(0.5, 0.9)
        parts.append(moved(frustum(shade_r, top_r, shade_h), (0, 0, height - shade_h)))
        if rng.random() < 0.4:
            parts.append(moved(sphere(thin * 0.8, 6, ROD_SEGMENTS), (0, 0, height)))
        return finish(parts, rng)
    reach = height * rng.uniform(0.35, 0.6)
    shade_h, shade_r = height * rng.uniform(0.15, 0.22), height * rng.uniform(0.1, 0.16)
    thin = thinnest(max(height, reach + 0.2 * height + shade_r) * 1.05)
    base = rng.uniform(0.25, 0.35) * height
    base_t = rng.uniform(thin, 1.4 * thin)
    if rng.random() < 0.5:
        parts.append(cylinder(base / 2, base_t))
    else:
        parts.append(box((base, base * 0.8, base_t), (0, 0, base_t / 2)))
    pole, elbow_z = rng.uniform(1.2 * thin, 1.5 * thin), height * rng.uniform(0.55, 0.8)
    elbow = np.array([-base * 0.2, 0.0, elbow_z])
    parts.append(rod((elbow[0], 0, 0), elbow, pole))
    parts.append(transform(sphere(pole * 0.9, 6, ROD_SEGMENTS), offset=elbow))
    head = np.array([elbow[0] + reach, 0.0, height * rng.uniform(0.8, 0.95)])
    parts.append(rod(elbow, head, pole))
    shade = frustum(shade_r, max(shade_r * 0.35, thin), shade_h)
    tilt = rotation("y", rng.uniform(-20.0, 0.0))
    parts.append(transform(shade, tilt, head - (0, 0, shade_h * 0.8), pivot=(0, 0, shade_h * 0.8)))
    return finish(parts, rng)


def make_mug(rng: np.random.Generator) -> Mesh:
    """A hollow cup (a wall, a floor and an opening at the top) with a C-shaped handle on +x."""
    height = rng.uniform(0.08, 0.12)
    radius = height * rng.uniform(0.33, 0.48)
    reach = height * rng.uniform(0.22, 0.32)
    thin = thinnest(max(height, 2 * radius + reach) * 1.05)
    wall = rng.uniform(thin, 1.3 * thin)
    flare = radius * rng.uniform(1.0, 1.15) if rng.random() < 0.3 else radius
    profile = [(0, 0), (radius, 0), (flare, height), (flare - wall, height), (radius - wall, wall), (0, wall)]
    parts = [revolve(profile)]
    grip = rng.uniform(thin, 1.3 * thin)
    low, high = height * rng.uniform(0.15, 0.3), height * rng.uniform(0.7, 0.85)
    wall_x, outer_x = radius - wall / 2, radius + reach
    corners = [(wall_x, 0, high), (outer_x, 0, high), (outer_x, 0, low), (wall_x, 0, low)]
    square = rng.random() < 0.3
    for start, end in zip(corners[:-1], corners[1:], strict=True):
        parts.append(rod(start, end, grip, round_section=not square))
    if not square:
        parts += [moved(sphere(grip / 2, 6, ROD_SEGMENTS), corner) for corner in corners[1:3]]
    return finish(parts, rng)


def make_bottle(rng: np.random.Generator) -> Mesh:
    """A solid of revolution: a body, a rounded shoulder, a neck, a lip; wine, water or jug proportions."""
    height = rng.uniform(0.2, 0.35)
    thin = thinnest(height)
    style = rng.integers(0, 3)
    if style == 0:  # wine: slim body, long neck
        body_r, body_h, neck_h = height * rng.uniform(0.12, 0.16), height * rng.uniform(0.5, 0.6), 0.3
    elif style == 1:  # water: wide body, short neck
        body_r, body_h, neck_h = height * rng.uniform(0.16, 0.22), height * rng.uniform(0.6, 0.72), 0.12
    else:  # jug: wide low body, medium neck
        body_r, body_h, neck_h = height * rng.uniform(0.22, 0.3), height * rng.uniform(0.4, 0.5), 0.2
    neck_r = max(body_r * rng.uniform(0.3, 0.45), thin * 0.6)
    neck_h *= height * rng.uniform(0.8, 1.2)
    lip_h, lip_r = rng.uniform(0.8, 1.2) * thin, neck_r + rng.uniform(0.1, 0.3) * thin
    shoulder_top = height - neck_h - lip_h
    body_h = min(body_h, shoulder_top - 0.08 * height)
    foot = body_r * rng.uniform(0.88, 1.0)
    profile = [(0.0, 0.0), (foot, 0.0), (body_r, body_h * 0.1), (body_r, body_h)]
    for t in np.linspace(0, 1, 6)[1:]:  # shoulder: a quarter cosine from the body radius to the neck radius
        r = neck_r + (body_r - neck_r) * np.cos(t * np.pi / 2)
        profile.append((r, body_h + (shoulder_top - body_h) * np.sin(t * np.pi / 2)))
    profile += [(neck_r, height - lip_h), (lip_r, height - lip_h), (lip_r, height), (0.0, height)]
    parts = [revolve(profile)]
    if rng.random() < 0.3:  # a flat-sided flask: a box round the round body
        side_x, side_y = 2 * body_r * rng.uniform(0.85, 1.0), 2 * body_r * rng.uniform(0.55, 1.0)
        parts.append(box((side_x, side_y, body_h), (0, 0, body_h / 2)))
    if style == 2 and rng.random() < 0.6:  # a jug's handle, from the shoulder down the side on +x
        grip, reach = rng.uniform(thin, 1.3 * thin), body_r * rng.uniform(0.35, 0.6)
        high, low = (body_h + shoulder_top) / 2, body_h * rng.uniform(0.35, 0.6)
        inner = neck_r + (body_r - neck_r) * 0.5
        corners = [
            (inner, 0, high),
            (body_r + reach, 0, high),
            (body_r + reach, 0, low),
            (body_r - grip, 0, low),
        ]
        for start, end in zip(corners[:-1], corners[1:], strict=True):
            parts.append(rod(start, end, grip))
    return finish(parts, rng)


def make_sofa(rng: np.random.Generator) -> Mesh:
    """A long base, one to three seat cushions, a backrest at -y, usually two arms, sometimes short legs."""
    width, depth = rng.uniform(1.5, 2.4), rng.uniform(0.8, 1.0)
    thin = thinnest(width * 1.05)
    leg_h = rng.uniform(thin, 1.5 * thin) if rng.random() < 0.5 else 0.0
    cushion_t = rng.uniform(thin, 1.3 * thin)
    base_top = leg_h + rng.uniform(thin, 1.6 * thin)
    seat_z = base_top + cushion_t
    back_z = seat_z + rng.uniform(0.3, 0.5)
    parts = [box((width, depth, base_top - leg_h), (0, 0, (base_top + leg_h) / 2))]
    if leg_h:
        for sx in (-1, 1):
            for sy in (-1, 1):
                x, y = sx * (width / 2 - thin), sy * (depth / 2 - thin)
                parts.append(box((thin, thin, leg_h + 0.02), (x, y, (leg_h + 0.02) / 2)))
    back_t = rng.uniform(1.2 * thin, 1.2 * thin + 0.1)
    parts.append(box((width, back_t, back_z - leg_h), (0, -depth / 2 + back_t / 2, (back_z + leg_h) / 2)))
    arm_w = 0.0
    if rng.random() < 0.8:
        arm_w, arm_z = rng.uniform(thin, 1.6 * thin), rng.uniform(seat_z + 0.1, back_z - 0.05)
        for sx in (-1, 1):
            parts.append(
                box((arm_w, depth, arm_z - leg_h), (sx * (width / 2 - arm_w / 2), 0, (arm_z + leg_h) / 2))
            )
    cushions = int(rng.integers(1, 4))
    span = width - 2 * arm_w
    cushion_w = span / cushions
    for k in range(cushions):
        x = -span / 2 + (k + 0.5) * cushion_w
        size = (cushion_w * 0.98 + 0.02, depth - back_t, cushion_t + 0.02)
        parts.append(box(size, (x, back_t / 2, base_top + cushion_t / 2)))
    return finish(parts, rng)


def make_monitor(rng: np.random.Generator) -> Mesh:
    """A thin screen facing +y, tilted back a little, on a neck behind it and a foot; sometimes a CRT body."""
    width = rng.uniform(0.45, 0.75)
    screen_h, lift = width * rng.uniform(0.55, 0.7), rng.uniform(0.08, 0.18)
    thin = thinnest(width * 1.05)
    screen_t = rng.uniform(thin, 1.3 * thin)
    screen_z = lift + screen_h / 2
    screen = [box((width, screen_t, screen_h), (0, 0, screen_z))]
    if rng.random() < 0.2:
        bulk = width * rng.uniform(0.35, 0.55)
        screen.append(frustum(screen_h * 0.45, screen_h * 0.25, bulk, 4))
        screen[-1] = transform(
            screen[-1], rotation("x", 90) @ rotation("z", 45), (0, screen_t / 2 - 0.01, screen_z)
        )
    tilt = rng.uniform(0.0, 10.0)
    parts = [transform(p, rotation("x", tilt), pivot=(0, 0, screen_z)) for p in screen]
    neck_w, neck_t = rng.uniform(thin, 2.5 * thin), rng.uniform(thin, 1.3 * thin)
    neck_y = -screen_t / 2 - neck_t / 2 + 0.005
    parts.append(box((neck_w, neck_t, screen_z), (0, neck_y, screen_z / 2)))
    foot_t = rng.uniform(thin * 0.9, 1.2 * thin)
    if rng.random() < 0.6:
        foot = (width * rng.uniform(0.35, 0.6), rng.uniform(0.15, 0.25), foot_t)
        parts.append(box(foot, (0, neck_y, foot_t / 2)))
    else:
        parts.append(moved(cylinder(width * rng.uniform(0.18, 0.28), foot_t), (0, neck_y, 0)))
    return finish(parts, rng)


BUILDERS: dict[str, Callable[[np.random.Generator], Mesh]] = {
    "bed": make_bed,
    "bottle": make_bottle,
    "chair": make_chair,
    "lamp": make_lamp,
    "monitor": make_monitor,
    "mug": make_mug,
    "shelf": make_shelf,
    "sofa": make_sofa,
    "stool": make_stool,
    "table": make_table,
}
assert tuple(BUILDERS) == CLASSES


def build_shape(class_name: str, rng: np.random.Generator) -> Mesh:
    """Build one shape of ``class_name``: vertices (V, 3) float64, faces (F, 3) int64, z up, on z = 0."""
    if class_name not in BUILDERS:
        raise VoxganError(f"unknown shapes class {class_name!r}; choose one of {', '.join(CLASSES)}")
    return BUILDERS[class_name](rng)


def shape_rng(seed: int, class_name: str, split: str, index: int) -> np.random.Generator:
    """The random stream of one file: a function of (seed, class, split, index within the split) only."""
    return np.random.default_rng([seed, CLASSES.index(class_name), SPLITS.index(split), index])


# ---------------------------------------------------------------------------------------------------------
# Byte-stable writers.


def off_bytes(mesh: Mesh, fused_header: bool = False) -> bytes:
    """OFF text; ``fused_header`` writes ModelNet's quirk, ``OFF`` and the counts on one line."""
    vertices, faces = mesh
    head = (
        f"OFF{len(vertices)} {len(faces)} 0\n" if fused_header else f"OFF\n{len(vertices)} {len(faces)} 0\n"
    )
    rows = [head] + [f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices.tolist()]
    rows += [f"3 {a} {b} {c}\n" for a, b, c in faces.tolist()]
    return "".join(rows).replace("-0.000000", "0.000000").encode()


def obj_bytes(mesh: Mesh) -> bytes:
    """Wavefront OBJ text (1-based face indices)."""
    vertices, faces = mesh
    rows = ["# voxgan shapes\n"] + [f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices.tolist()]
    rows += [f"f {a} {b} {c}\n" for a, b, c in (faces + 1).tolist()]
    return "".join(rows).replace("-0.000000", "0.000000").encode()


def stl_bytes(mesh: Mesh) -> bytes:
    """Binary STL: an 80-byte header, the triangle count, then a normal and three corners per triangle."""
    vertices, faces = mesh
    triangles = vertices[faces]  # (F, 3, 3)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)
    record = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
    data = np.zeros(len(faces), dtype=record)
    data["normal"], data["corners"] = normals, triangles
    header = b"voxgan shapes binary STL".ljust(80, b" ")
    return header + np.uint32(len(faces)).astype("<u4").tobytes() + data.tobytes()


def ply_bytes(mesh: Mesh) -> bytes:
    """Binary little-endian PLY: float32 vertices, faces as a uchar count and three int32 indices."""
    vertices, faces = mesh
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment voxgan shapes\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    record = np.dtype([("count", "u1"), ("indices", "<i4", 3)])
    rows = np.zeros(len(faces), dtype=record)
    rows["count"], rows["indices"] = 3, faces
    return header.encode() + vertices.astype("<f4").tobytes() + rows.tobytes()


def mesh_bytes(mesh: Mesh, fmt: str, fused_header: bool = False) -> bytes:
    """The bytes of ``mesh`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "off":
        return off_bytes(mesh, fused_header)
    return {"obj": obj_bytes, "stl": stl_bytes, "ply": ply_bytes}[fmt](mesh)


def file_format(class_name: str, number: int) -> tuple[str, bool]:
    """The format of file ``number`` of a class and whether it carries the fused OFF header.

    Formats rotate through :data:`FORMATS`, shifted per class; every other OFF file has the fused header.
    """
    turn = number + CLASSES.index(class_name)
    fmt = FORMATS[turn % len(FORMATS)]
    return fmt, fmt == "off" and (turn // len(FORMATS)) % 2 == 0


# ---------------------------------------------------------------------------------------------------------
# The dataset.


@dataclass(frozen=True)
class PlannedFile:
    """One file of the set: its class, split, index within the split, ModelNet number and format."""

    class_name: str
    split: str
    index: int
    number: int

    @property
    def format(self) -> tuple[str, bool]:
        """(extension, fused OFF header)."""
        return file_format(self.class_name, self.number)

    @property
    def path(self) -> str:
        """Relative path, ``<class>/<split>/<class>_<NNNN>.<ext>``."""
        return f"{self.class_name}/{self.split}/{self.class_name}_{self.number:04d}.{self.format[0]}"


def plan_files(train_per_class: int, test_per_class: int) -> list[PlannedFile]:
    """Every file of a set, in writing order; test numbers continue after the train numbers."""
    firsts = {"train": (train_per_class, 1), "test": (test_per_class, train_per_class + 1)}
    return [
        PlannedFile(class_name, split, index, first + index)
        for class_name in CLASSES
        for split, (count, first) in firsts.items()
        for index in range(count)
    ]


def write_set(folder: Path, seed: int, train_per_class: int, test_per_class: int, progress: bool) -> None:
    """Write every mesh of the set under ``folder`` (which exists and is empty)."""
    from tqdm import tqdm

    for class_name in CLASSES:
        for split in SPLITS:
            (folder / class_name / split).mkdir(parents=True)
    plan = plan_files(train_per_class, test_per_class)
    for planned in tqdm(plan, desc="shapes", unit="mesh", disable=not progress):
        mesh = build_shape(
            planned.class_name, shape_rng(seed, planned.class_name, planned.split, planned.index)
        )
        fmt, fused = planned.format
        (folder / planned.path).write_bytes(mesh_bytes(mesh, fmt, fused))


def generate_shapes(
    out_dir: Path,
    *,
    seed: int = 0,
    train_per_class: int = DEFAULT_TRAIN_PER_CLASS,
    test_per_class: int = DEFAULT_TEST_PER_CLASS,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, dict[str, int]]:
    """Write the ``shapes`` dataset to ``out_dir`` in ModelNet layout; return the counts per class and split.

    The set is built in a hidden sibling folder and renamed to ``out_dir`` when complete. An existing
    non-empty ``out_dir`` is refused unless ``overwrite``, which replaces it once the new set is complete,
    and only when it holds nothing but class folders (a shapes set written before), so that a mistyped
    path never deletes other data.
    """
    shown, out_dir = out_dir, Path(out_dir).resolve()
    if seed < 0 or train_per_class < 0 or test_per_class < 0:
        raise VoxganError("shapes: seed and counts must be 0 or more")
    if train_per_class + test_per_class == 0:
        raise VoxganError("shapes: nothing to write; ask for at least one train or test shape per class")
    if out_dir.exists() and not out_dir.is_dir():
        raise VoxganError(f"{shown} is a file, not a folder; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise VoxganError(f"{shown} already exists and is not empty; pass --overwrite to replace it")
        stranger = foreign_entry(out_dir)
        if stranger is not None:
            raise VoxganError(
                f"{shown} holds {stranger.name!r}, which voxgan shapes did not write; --overwrite only "
                "replaces a shapes set: remove the folder yourself or choose another one"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        write_set(staging, seed, train_per_class, test_per_class, progress)
        replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: {"train": train_per_class, "test": test_per_class} for name in CLASSES}


def foreign_entry(folder: Path) -> Path | None:
    """The first entry of ``folder`` that a shapes set does not hold (a shapes set: class folders only)."""
    for entry in sorted(folder.iterdir()):
        if not (entry.is_dir() and entry.name in CLASSES) and not entry.name.startswith("."):
            return entry
    return None


def remove_stale_staging(out_dir: Path) -> None:
    """Delete hidden staging folders of ``out_dir`` left by runs that were killed (their process is gone)."""
    for folder in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = folder.name.rsplit(".partial-", 1)[1].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine; elsewhere than POSIX, assume it does)."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replace_folder(new: Path, target: Path) -> None:
    """Move folder ``new`` to ``target``; a non-empty ``target`` is moved aside first and deleted after."""
    if target.is_dir() and any(target.iterdir()):
        old = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)  # rename(2) replaces an empty folder
