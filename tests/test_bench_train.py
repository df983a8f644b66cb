"""tools/bench/train.py runs end to end and counts what it says (the timings are not checked)."""

from __future__ import annotations

import json

from otok.tools.bench import train as bench_train


def test_bench_compares_the_passes(capsys):
    assert bench_train.main(["--models", "otok-tiny", "--res", "32", "--frames", "9", "--tokens", "96",
                             "--steps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["pass"]: row for row in report["rows"]}
    assert set(rows) == {"parallel", "stepwise"}
    parallel, stepwise = rows["parallel"], rows["stepwise"]
    assert parallel["shape"] == stepwise["shape"] == "2x9x32x32"  # 96 tokens: two clips of 3 steps of 4x4
    # The same work, in fewer ops (the step path also attends to its cache's empty slots).
    assert 0.99 * stepwise["tflop_per_step"] <= parallel["tflop_per_step"] <= stepwise["tflop_per_step"]
    assert parallel["aten_ops_per_step"] < stepwise["aten_ops_per_step"]
    assert 0 < parallel["of_matmul"] and report["ceiling"]["tflops"] > 0


def test_bench_rejects_an_unknown_pass(capsys):
    try:
        bench_train.main(["--passes", "sideways"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "--passes takes parallel, stepwise" in capsys.readouterr().err
