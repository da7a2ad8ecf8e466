"""Every test (and every subprocess it starts) keeps training checkpoints in a temporary folder,
never in the checkout's ``.ckpt/``."""
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _checkpoints_in_a_temporary_folder(tmp_path_factory):
    old = os.environ.get("LOOPED_SSM_CKPT_DIR")
    os.environ["LOOPED_SSM_CKPT_DIR"] = str(tmp_path_factory.mktemp("ckpt"))
    yield
    if old is None:
        os.environ.pop("LOOPED_SSM_CKPT_DIR", None)
    else:
        os.environ["LOOPED_SSM_CKPT_DIR"] = old
