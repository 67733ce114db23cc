"""Dataset recipes: one small declarative TOML file per dataset in ``pipelines/``.

A recipe says which layout a dataset has, which files to take, its classes, how splits are made, its up
axis, default voxelization options and the counts a complete copy gives. Keys (all optional but
``layout``)::

    description = "..."            # one line
    layout = "modelnet"            # auto | modelnet | shapenet | folder | flat
    include = ["*.off"]            # patterns matched from the right of the relative path, any case
    up_axis = "z"                  # the dataset's up axis: x, y, z, -x, -y, -z (shards are always +z up)
    test_fraction = 0.2            # hash split ratio (folder, flat, shapenet without a split file)
    class_names = ["bed", ...]     # fixed class list (label order); default: the classes found, sorted
    [class_map]                    # raw folder name or synset id -> class name
    [expected]                     # counts of a complete copy: train, test, total, classes
    [voxelize]                     # default options: resolution, mode, padding, max_faces, shard_size,
                                   # mat_key

Command-line options override every value. ``voxgan voxelize --recipe NAME_OR_PATH``: a NAME is a file
``NAME.toml`` of :func:`pipelines_dir` (the repository's ``pipelines/``, shipped in the wheel as
``voxgan/pipelines/``), a PATH any TOML file of this form.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from voxgan.errors import VoxganError

RECIPE_KEYS = frozenset(
    {
        "description",
        "layout",
        "include",
        "up_axis",
        "test_fraction",
        "class_names",
        "class_map",
        "expected",
        "voxelize",
    }
)
VOXELIZE_KEYS = frozenset({"resolution", "mode", "padding", "max_faces", "shard_size", "mat_key"})
EXPECTED_KEYS = frozenset({"train", "test", "total", "classes"})
LAYOUT_CHOICES = ("auto", "modelnet", "shapenet", "folder", "flat")


def pipelines_dir() -> Path:
    """The folder of the shipped recipes, the one place voxgan looks for them.

    An installed wheel or sdist holds them in ``voxgan/pipelines/`` (pyproject.toml maps the repository's
    ``pipelines/`` there); a checkout, or an editable install of one, reads ``pipelines/`` beside the
    package itself.
    """
    import voxgan

    package = Path(voxgan.__file__).resolve().parent
    shipped = package / "pipelines"
    return shipped if shipped.is_dir() else package.parent / "pipelines"


def recipe_names() -> list[str]:
    """Names of the recipes in :func:`pipelines_dir`, sorted."""
    return sorted(p.stem for p in pipelines_dir().glob("*.toml"))


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe; ``text`` is the file's full content, recorded in the manifest."""

    name: str
    text: str
    layout: str = "auto"
    include: tuple[str, ...] = ()
    up_axis: str | None = None
    test_fraction: float | None = None
    class_names: tuple[str, ...] = ()
    class_map: dict[str, str] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    voxelize: dict[str, object] = field(default_factory=dict)
    description: str = ""


def find_recipe_file(name_or_path: str) -> Path:
    """Resolve ``--recipe``: an existing file path, else ``pipelines/NAME.toml``; VoxganError if neither."""
    as_path = Path(name_or_path)
    if as_path.suffix == ".toml" or "/" in name_or_path:
        if as_path.is_file():
            return as_path
        raise VoxganError(f"recipe file {name_or_path} not found")
    candidate = pipelines_dir() / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(recipe_names()) or "none"
    raise VoxganError(f"unknown recipe {name_or_path!r}; known recipes: {known}, or a path to a .toml file")


def check_keys(name: str, section: str, given: set[str], known: frozenset[str]) -> None:
    """Raise VoxganError naming the first key of ``given`` that ``known`` lacks."""
    unknown = sorted(given - known)
    if unknown:
        listed = ", ".join(sorted(known))
        raise VoxganError(f"recipe {name}: unknown {section}key {unknown[0]!r}; known: {listed}")


def parse_recipe(name: str, text: str) -> Recipe:
    """Parse and check a recipe's TOML text; VoxganError naming the first wrong key or value."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise VoxganError(f"recipe {name}: not valid TOML ({error})") from None
    check_keys(name, "", set(data), RECIPE_KEYS)
    layout = data.get("layout", "auto")
    if layout not in LAYOUT_CHOICES:
        raise VoxganError(f"recipe {name}: layout {layout!r} is not one of {', '.join(LAYOUT_CHOICES)}")
    voxelize = dict(data.get("voxelize", {}))
    check_keys(name, "[voxelize] ", set(voxelize), VOXELIZE_KEYS)
    expected = dict(data.get("expected", {}))
    check_keys(name, "[expected] ", set(expected), EXPECTED_KEYS)
    include = data.get("include", [])
    class_names = data.get("class_names", [])
    class_map = data.get("class_map", {})
    if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
        raise VoxganError(f"recipe {name}: include must be a list of strings")
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
        raise VoxganError(f"recipe {name}: class_names must be a list of strings")
    if not isinstance(class_map, dict) or not all(isinstance(v, str) for v in class_map.values()):
        raise VoxganError(f"recipe {name}: [class_map] must map names to strings")
    if len(set(class_names)) != len(class_names):
        raise VoxganError(f"recipe {name}: class_names lists a class twice")
    return Recipe(
        name=name,
        text=text,
        layout=layout,
        include=tuple(include),
        up_axis=data.get("up_axis"),
        test_fraction=data.get("test_fraction"),
        class_names=tuple(class_names),
        class_map=dict(class_map),
        expected={k: int(v) for k, v in expected.items()},
        voxelize=voxelize,
        description=str(data.get("description", "")),
    )


def load_recipe(name_or_path: str) -> Recipe:
    """Find, read and parse a recipe by name (``pipelines/NAME.toml``) or path."""
    path = find_recipe_file(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise VoxganError(f"recipe {path}: cannot read it ({error})") from None
    name = path.stem if path.parent.resolve() == pipelines_dir() else str(path)
    return parse_recipe(name, text)


def shapenet_class_map() -> dict[str, str]:
    """ShapeNetCore synset id -> class name (55 classes), from ``pipelines/shapenetcore.toml``."""
    path = pipelines_dir() / "shapenetcore.toml"
    if not path.is_file():
        return {}
    return dict(parse_recipe("shapenetcore", path.read_text(encoding="utf-8")).class_map)


def count_mismatches(expected: dict[str, int], found: dict[str, int]) -> list[str]:
    """Compare the counts found with a complete copy's (keys as in ``[expected]``); a line per difference."""
    return [
        f"{key}: found {found.get(key, 0)}, a complete copy has {count}"
        for key, count in expected.items()
        if found.get(key, 0) != count
    ]
