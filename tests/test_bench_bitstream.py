"""tools/bench/bitstream.py runs end to end (its round trips are checked inside; the figures are not)."""

from __future__ import annotations

import json

import numpy as np

from otok.bitstream import Prior
from otok.bitstream.synthetic import repetition_grids
from otok.tools.bench import bitstream as bench_bitstream


def test_real_token_bench_round_trips_every_coder(tmp_path, capsys):
    for name, seed in (("a", 1), ("b", 2)):
        np.save(tmp_path / f"{name}.npy", repetition_grids(6, (6, 10), 300, 0.6, 3, seed=seed))
    assert bench_bitstream.main(["--tokens", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                                 "--gop", "3", "--repeat", "1", "--no-cold-start"]) == 0
    out = capsys.readouterr().out
    for coder in ("raw", "zstd", "ctx+loo", "ctx1+loo"):
        assert f" {coder} " in out
    Prior.from_tokens([repetition_grids(3, (6, 10), 300, 0.6, 3, seed=3)], 300).save(tmp_path / "m.prior")
    assert bench_bitstream.main(["--tokens", str(tmp_path / "a.npy"), "--gop", "3", "--repeat", "1",
                                 "--prior", str(tmp_path / "m.prior"), "--json", "--no-cold-start"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["coder"] for row in report["tokens"]] == ["raw", "zstd", "ctx+prior", "ctx1+prior"]
    assert all(row["encode_mtok_s"] > 0 and row["tokens"] == 6 * 60 for row in report["tokens"])
