import pytest

from tests.data.shard_folders import write_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("shards")
    write_folder(path, [900, 250, 700])  # 1850 samples, blocks of 512 rows at 16³
    return path
