import pytest

from tests.results.sources import make_shards


@pytest.fixture(scope="session")
def evaluation_shards(tmp_path_factory):
    """Labelled synthetic shapes in train and test shards; its FID classifier is trained once, then cached."""
    return make_shards(tmp_path_factory.mktemp("shards"), {"train": 160, "test": 40})
