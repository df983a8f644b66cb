"""Coverage-guided fuzzing of the `.otok` reader with atheris (long runs; CI runs the hypothesis fuzz tests).

    pip install atheris
    python tools/fuzz_bitstream.py -max_total_time=3600 -rss_limit_mb=2048 -timeout=10 fuzz-corpus/ tests/golden/bitstream/

Every input must either raise an `OtokError` or read cleanly; any other exception, a crash, a hang
(-timeout) or a blow-up in memory (-rss_limit_mb) is a bug. The golden files are a good seed corpus.
"""

from __future__ import annotations

import io
import sys
import warnings

import atheris

with atheris.instrument_imports():
    from otok.bitstream import OtokError, OtokReader, OtokWarning


def test_one_input(data: bytes) -> None:
    warnings.simplefilter("ignore", OtokWarning)
    try:
        reader = OtokReader(io.BytesIO(data))
        for _ in reader:
            pass
        try:
            assert 0 <= reader.coded_bytes <= len(data)
        except OtokError:
            pass
        if reader.complete:
            reader.seek(reader.frames - 1) if reader.frames else None
            for _ in reader:
                pass
        reader.verify()
    except OtokError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
