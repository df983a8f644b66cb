"""`otok dataset --engine ray` on a local Ray instance of 2 CPUs with 2 actors: the rows and failures of the
local engine. Skipped where Ray Data is not installed (`pip install 'ray[data]'`; the test extra has it)."""

from __future__ import annotations

import json

import pytest

from test_dataset import corpus, models, rows, run  # noqa: F401 - fixtures

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, on its context's fields


@pytest.fixture(scope="module")
def local_ray():
    """One Ray instance for the module; `otok dataset` joins it (and leaves it running) instead of starting one."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield
    ray.shutdown()


def test_ray_engine_writes_what_the_local_engine_writes(tmp_path, capsys, models, corpus, local_ray):  # noqa: F811
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    sources = [corpus, tmp_path / "bad.mp4"]
    options = ["--model", models["vq"], "--clip-frames", 4, "--shard-rows", 2]
    assert run(capsys, "dataset", *sources, "--out", tmp_path / "local", *options)[0] == 1
    status, printed, err = run(capsys, "dataset", *sources, "--out", tmp_path / "ray", *options, "--engine", "ray",
                               "--workers", 2)
    assert status == 1, err
    assert "7 clips of 3 files" in printed and "files failed: 1 of 4" in err
    assert rows(tmp_path / "ray") == rows(tmp_path / "local")
    assert [json.loads(line)["path"] for line in (tmp_path / "ray" / "failures.jsonl").read_text().splitlines()] == [
        str(tmp_path / "bad.mp4")]
    assert ray.is_initialized()  # the command did not shut down the instance it joined
