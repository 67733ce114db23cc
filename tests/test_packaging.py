"""voxgan as users install it: the sdist and the wheel built from the checkout's files, the wheel installed
into a fresh virtual environment, and the README's commands run from a folder outside the checkout.

The build runs offline (``python -m build --no-isolation``, with this environment's setuptools): the sdist
first, then the wheel from the unpacked sdist, so a file the sdist forgets is missing from the wheel too.
The fresh environment reuses this one's torch, numba and the rest through a ``.pth`` line and installs the
wheel alone (``--no-deps --no-index``), so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

import voxgan
from tests.meshfiles import box_vertices, write_mat_v5, write_obj_triangles, write_off

REPO = Path(__file__).resolve().parents[1]
COMPILING = "compiling the voxelizer's numba kernels"
BOX_FACES = np.array(
    [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
     [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]]
)  # fmt: skip


def checkout_files() -> list[str]:
    """The files a fresh clone of this checkout has (tracked, plus new files git does not ignore)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of voxgan")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    return sorted(name for name in listed.split("\0") if name and (REPO / name).is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The sdist and the wheel ``python -m build`` makes from a copy of the checkout, and its output."""
    root = tmp_path_factory.mktemp("build")
    source, dist = root / "voxgan", root / "dist"
    files = checkout_files()
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = dist.glob("voxgan-*.whl")
    (sdist,) = dist.glob("voxgan-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "files": files, "log": done.stdout + done.stderr}


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> dict:
    """A fresh venv holding the wheel, this environment's packages behind it, and the environment to run
    its ``voxgan`` in: an empty user cache folder (numba's fallback), no PYTHONPATH, one thread."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-index", str(built["wheel"])],
        check=True, timeout=300,
    )  # fmt: skip
    unset = ("PYTHONPATH", "NUMBA_CACHE_DIR", "VOXGAN_NO_NUMBA")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env |= {"XDG_CACHE_HOME": str(root / "user-cache"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    work = root / "work"  # outside the checkout
    work.mkdir()
    return {"venv": venv, "package": Path(purelib) / "voxgan", "env": env, "work": work}


def voxgan_in(installed: dict, *args, env: dict | None = None, prefix=()) -> subprocess.CompletedProcess:
    """Run the installed ``voxgan`` with ``args`` in the work folder; ``prefix``: a command to wrap it in."""
    command = [*prefix, str(installed["venv"] / "bin" / "voxgan"), *map(str, args)]
    env, cwd = env or installed["env"], installed["work"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{done.args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def recipe_input(name: str, folder: Path) -> Path:
    """A tiny dataset in the layout recipe ``name`` reads: two boxes (or two 30³ volumes)."""
    box = box_vertices((0, 0, 0), (1.0, 2.0, 3.0))
    if name == "shapenetcore":
        for model in ("m1", "m2"):
            path = folder / "03001627" / model / "models" / "model_normalized.obj"
            write_obj_triangles(path, box, BOX_FACES)
    elif name == "3dshapenets":
        volume = np.zeros((30, 30, 30), np.uint8)
        volume[5:25, 5:15, 5:10] = 1
        for split in ("train", "test"):
            write_mat_v5(folder / "desk" / "30" / split / f"desk_000001_{split}.mat", {"instance": volume})
    else:  # ModelNet layout: the ModelNet recipes, folder, thingi10k
        for split, number in (("train", 1), ("test", 2)):
            write_off(folder / "bed" / split / f"bed_{number:04d}.off", box, BOX_FACES)
    return folder


def run_time_files(files: list[str]) -> dict[str, str]:
    """The checkout's files a command reads at run time -> their paths in the wheel: every module, and the
    files ``[tool.setuptools.package-data]`` of pyproject.toml names (the recipes, for one)."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = setuptools.get("package-dir", {})
    shipped = {name: name for name in files if name.startswith("voxgan/") and name.endswith(".py")}
    for package, patterns in setuptools.get("package-data", {}).items():
        folder = REPO / folders.get(package, package.replace(".", "/"))
        for path in (path for pattern in patterns for path in folder.glob(pattern)):
            name = path.relative_to(REPO).as_posix()
            if name in files:
                shipped[name] = f"{package.replace('.', '/')}/{path.relative_to(folder).as_posix()}"
    return shipped


def test_sdist_and_wheel_hold_what_runs_and_nothing_test_only(built):
    """Every module and recipe of the checkout is in both; the wheel holds nothing else; no build warning."""
    files = built["files"]
    shipped = run_time_files(files)
    recipes = {name for name in files if name.startswith("pipelines/") and name.endswith(".toml")}
    assert len(recipes) >= 7 and {shipped.get(name) for name in recipes} == {"voxgan/" + n for n in recipes}
    wheel = set(zipfile.ZipFile(built["wheel"]).namelist())
    missing = set(shipped.values()) - wheel
    assert not missing, f"not in the wheel (add a package to [tool.setuptools] packages?): {sorted(missing)}"
    info = f"voxgan-{voxgan.__version__}.dist-info/"
    others = {name for name in wheel - set(shipped.values()) if not name.startswith(info)}
    assert not others, f"the wheel holds files voxgan does not run: {sorted(others)}"
    assert info + "licenses/LICENSE" in wheel
    metadata = zipfile.ZipFile(built["wheel"]).read(info + "METADATA").decode()
    assert f"\nVersion: {voxgan.__version__}\n" in metadata and "\nLicense-Expression: MIT\n" in metadata
    assert "Provides-Extra: ray" in metadata and "Provides-Extra: tensorboard" in metadata

    top = f"voxgan-{voxgan.__version__}/"
    with tarfile.open(built["sdist"]) as sdist:
        held = {name.removeprefix(top) for name in sdist.getnames()}
    needed = set(shipped) | {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"}
    assert not needed - held, sorted(needed - held)
    assert not {name for name in held if name.startswith(("tests/", "benchmarks/"))}
    warned = [line for line in built["log"].splitlines() if "Deprecat" in line or "BackendWarning" in line]
    assert not warned, warned


@pytest.mark.slow
def test_installed_wheel_runs_the_readme_commands_from_another_folder(installed):
    work = installed["work"]
    where = subprocess.run(
        [installed["venv"] / "bin" / "python", "-c", "import voxgan; print(voxgan.__file__)"],
        cwd=work, env=installed["env"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).parent == installed["package"]  # the wheel's code, not the checkout's
    assert ok(voxgan_in(installed, "--version")).stdout.strip() == f"voxgan {voxgan.__version__}"

    ok(voxgan_in(installed, "shapes", "meshes", "--train-per-class", 2, "--test-per-class", 1))
    first = ok(voxgan_in(installed, "voxelize", "meshes", "shards", "--recipe", "shapes", "--workers", 2))
    assert COMPILING in first.stderr and str(installed["package"]) in first.stderr  # cached in the install
    assert list((installed["package"] / "ingest" / "__pycache__").glob("kernels.*.nbi"))
    again = ok(voxgan_in(installed, "voxelize", "meshes", "again", "--recipe", "shapes", "--workers", 1))
    assert COMPILING not in again.stderr  # later runs load the compiled loops
    assert json.loads((work / "shards" / "manifest.json").read_text())["recipe"]["name"] == "shapes"
    ok(voxgan_in(installed, "info", "shards"))

    names = sorted(path.stem for path in (REPO / "pipelines").glob("*.toml"))
    for name in names:
        if name == "shapes":
            continue
        data = recipe_input(name, work / "inputs" / name)
        ok(voxgan_in(installed, "voxelize", data, work / "recipes" / name, "--recipe", name, "--workers", 1))
        manifest = json.loads((work / "recipes" / name / "manifest.json").read_text())
        assert manifest["recipe"]["name"] == name and manifest["errors"] == []

    train = ["train", "--data", "shards", "--steps", 2, "--batch-size", 4, "--generator-width", 4,
             "--critic-width", 4, "--log-every", 1, "--device", "cpu", "--out", "runs"]  # fmt: skip
    trained = ok(voxgan_in(installed, *train))
    if importlib.util.find_spec("tensorboard") is None:  # the missing extra is named, once
        assert trained.stderr.count("pip install 'voxgan[tensorboard]'") == 1
    (run,) = (work / "runs").iterdir()
    assert (run / "checkpoints" / "latest.pt").is_file()
    ok(voxgan_in(installed, "export", "--format", "glb", "--num", 2, "--out", "exports"))
    assert len(list((work / "exports").rglob("*.glb"))) == 2
    pretrained = ["export", "--pretrained", "shapes-16-cond", "--class", "chair", "--format", "png"]
    ok(voxgan_in(installed, *pretrained, "--num", 4, "--out", "exports"))  # the shipped weights, offline
    assert (work / "exports" / "shapes-16-cond-chair.png").is_file()
    ok(voxgan_in(installed, "evaluate", "--data", "shards", "--num", 4, "--device", "cpu", "--no-context"))
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["num"] == 4


def read_only(*folders: Path) -> list[str]:
    """A command prefix under which ``folders`` cannot be written, even by root (else they are chmod-ed)."""
    if os.geteuid() != 0:
        for folder in folders:
            subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("as root, a read-only folder needs unshare (util-linux)")
    mounts = " && ".join(f"mount --bind {f} {f} && mount -o remount,ro,bind {f} {f}" for f in folders)
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{mounts} && true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"as root, a read-only bind mount is not allowed here: {probe.stderr.decode().strip()}")
    return ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh"]


@pytest.mark.slow
def test_a_read_only_install_caches_in_the_user_folder_or_compiles_in_memory(installed, tmp_path):
    """numba's cache falls back to ~/.cache/numba (here XDG_CACHE_HOME) when the install is read-only;
    with no writable folder at all the loops are compiled in memory, and the run still succeeds."""
    data = recipe_input("folder", tmp_path / "meshes")
    user_cache = tmp_path / "user-cache"
    user_cache.mkdir()
    env = installed["env"] | {"XDG_CACHE_HOME": str(user_cache)}
    prefix = read_only(installed["package"])
    done = ok(voxgan_in(installed, "voxelize", data, tmp_path / "one", "--workers=1", env=env, prefix=prefix))
    assert COMPILING in done.stderr and str(user_cache / "numba") in done.stderr
    assert list((user_cache / "numba").rglob("kernels.*.nbi"))

    nowhere = tmp_path / "no-cache"
    nowhere.mkdir()
    env = installed["env"] | {"XDG_CACHE_HOME": str(nowhere), "HOME": str(nowhere)}
    prefix = read_only(installed["package"], nowhere)
    done = ok(voxgan_in(installed, "voxelize", data, tmp_path / "two", "--workers=1", env=env, prefix=prefix))
    assert "on every run (about 5-10 s): no writable folder for numba's cache" in done.stderr
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["splits"]["train"]["count"] == 1
