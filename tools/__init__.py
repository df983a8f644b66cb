"""otok.tools: the product around the model, by concern.

The product (what `otok` and `import otok` run), one concern a module:
    cli, entry      the `otok` command: flags -> options objects -> the functions below; one-line errors
    api             load, read_tokens (no PyTorch), installed_priors, open_dataset
    options         EncodeOptions / DecodeOptions (checked once) and the encoding DEFAULTS
    models          registry name, weights path or engine folder -> Tokenizer; the model a file names; its priors
    encode, decode  encode_file / decode_file, streaming
    info            file_info (`otok info`)
    files, limits   paths (atomic outputs, pipes, inputs), and what a frame may cost before it is allocated
    errors          the OtokError family of the functions here
    video_io        video and image files with PyAV
Beside it, in subpackages:
    evaluation/     eval_file, metrics, rate-distortion curves and BD-rate, folder sweeps
    dataset/        `otok dataset`: Parquet token shards, local or on Ray Data, and their reader
    bank/           the training data bank's builder (its reader is `otok.train.bank`)
    bench/          benchmarks that print the figures docs/BENCHMARKS.md quotes
    release/        what a model release ships besides its weights (the ctx prior table)
"""
