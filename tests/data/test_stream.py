"""voxgan.data.stream: the resume point follows the DataLoader's round robin over its workers."""

from voxgan.data.stream import resume_point


def test_resume_point_follows_the_dataloader_round_robin():
    assert resume_point([3, 3], 0) == ([0, 0], 0)
    assert resume_point([3, 3], 3) == ([2, 1], 1)
    assert resume_point([3, 1], 3) == ([2, 1], 0)
    assert resume_point([2, 2], 4) == ([2, 2], 0)
