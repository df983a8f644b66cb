"""`otok dataset`: a corpus of videos and images into Parquet shards of tokens, and back.

`build.build_dataset` is the command (engines: this process, or Ray Data in `ray_engine`, imported only for
engine="ray"); `read.open_dataset` (`otok.open_dataset`) reads the shards for training. The folder holds:

    DIR/data/shard-000000.parquet ...  one row per clip (columns: `build.schema`); a file's rows share a shard
    DIR/dataset.json                   the options the tokens were made with (model, weights hash, rdo, ...)
    DIR/failures.jsonl                 the last run's files that could not be tokenized: {"path", "error"}
    DIR/otok/                          the `.otok` files (also_otok), named in the rows' `otok` column

Shards are written under a hidden temporary name, fsynced and renamed, so a reader (pyarrow, HF datasets,
`open_dataset`) never takes a half-written one. A rerun with the same options skips the files already in
the shards; other options are refused unless overwrite.
"""
