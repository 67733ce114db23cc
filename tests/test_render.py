import numpy as np
import pytest
from matplotlib.image import imread

from voxgan.render import image_size, render_volume, render_volumes


def ball(resolution, radius_fraction=0.35):
    centre = resolution / 2
    x, y, z = np.indices((resolution,) * 3) + 0.5
    return (x - centre) ** 2 + (y - centre) ** 2 + (z - centre) ** 2 < (radius_fraction * resolution) ** 2


def voxel_pixels(image):
    """Pixels drawn by voxels: the renderer's blue, never the grey floor or white background."""
    rgb = image.astype(int)
    return rgb[..., 2] - rgb[..., 0] > 40


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_render_volume_is_rgb_image_showing_the_shape(resolution):
    image = render_volume(ball(resolution))
    assert image.dtype == np.uint8 and image.shape == (*image_size(resolution), 3)
    drawn = voxel_pixels(image)
    assert 0.05 < drawn.mean() < 0.6
    # shaded: the faces of a ball take many brightness levels, not one flat colour
    assert len(np.unique(image[drawn].sum(axis=1))) > 10


def test_empty_volume_draws_no_voxel():
    image = render_volume(np.zeros((16, 16, 16), bool))
    assert not voxel_pixels(image).any()
    assert (image == 255).any() and (image < 255).any()  # background and floor


def test_float_volume_is_thresholded_like_bool():
    rng = np.random.default_rng(0)
    values = rng.random((16, 16, 16))
    assert np.array_equal(render_volume(values, threshold=0.7), render_volume(values > 0.7))


def test_nearer_voxel_hides_the_one_behind_it():
    # the camera looks from (+x, -y, +z): voxel (5, 5, 5) sits right in front of (4, 6, 4)
    front = np.zeros((16, 16, 16), bool)
    front[5, 5, 5] = True
    both = front.copy()
    both[4, 6, 4] = True
    front_image, both_image = render_volume(front), render_volume(both)
    assert np.array_equal(voxel_pixels(front_image), voxel_pixels(both_image))
    mask = voxel_pixels(front_image)
    assert np.array_equal(front_image[mask], both_image[mask])


def test_render_volumes_writes_png_grid(tmp_path):
    volumes = np.stack([ball(16, 0.2), ball(16, 0.3), ball(16, 0.4), np.zeros((16, 16, 16), bool)])
    path = tmp_path / "grid.png"
    render_volumes(volumes, path, ncols=2)
    picture = imread(path)
    height, width = image_size(16)
    assert picture.shape[0] > 2 * height and picture.shape[1] > 2 * width
    assert picture.shape[0] < 3 * height and picture.shape[1] < 3 * width
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left


def test_render_volumes_with_titles_and_model_shaped_input(tmp_path):
    volumes = np.stack([ball(16).astype(np.float32)] * 3)[:, None]  # (N, 1, R, R, R) as a generator gives
    path = tmp_path / "titled.png"
    render_volumes(volumes, path, titles=["a", "b", "c"])
    picture = imread(path)
    assert picture.shape[0] > image_size(16)[0] and picture.shape[1] > 2 * image_size(16)[1]
