import pytest

from checkpoints import make_checkpoint


@pytest.fixture(scope="session")
def moe_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("glm4v_moe"), "glm4v_moe")


@pytest.fixture(scope="session")
def dense_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("glm4v"), "glm4v")


@pytest.fixture(params=["glm4v_moe", "glm4v"])
def checkpoint(request, moe_checkpoint, dense_checkpoint):
    return moe_checkpoint if request.param == "glm4v_moe" else dense_checkpoint
