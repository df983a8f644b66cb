"""`otok dataset`: sources into Parquet shards of tokens (the folder's layout: the package's docstring).

A clip's tokens are those `otok encode` writes and `otok.read_tokens` reads back, by construction: each clip
goes through `otok.tools.encode.encode_frames` into a scratch `.otok` file (the raw coder, unless the file is kept)
and is read back with `read_tokens`.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from otok.bitstream import OtokError

from .. import encode
from ..files import atomic_output, check_input, open_video
from ..models import load_model, model_priors
from ..api import read_tokens
from ..options import DEFAULTS
from ..errors import ArgumentError, InputError, MediaError, install_hint
from ..video_io import media_files

MANIFEST, FAILURES, SHARDS, OTOK = "dataset.json", "failures.jsonl", "data", "otok"
ROW_GROUP_ROWS = 64  # the unit `open_dataset` deals out to DataLoader workers and ranks
SHARD_BYTES = 256 << 20  # a shard is written at shard_rows rows or this many bytes, whichever comes first


@dataclass(frozen=True)
class Options:
    """What the tokens depend on: a folder holds rows made with one set of them (its dataset.json)."""

    model: str
    weights_sha256: str
    device: str  # cpu or cuda (bf16 autocast there, `otok.tools.models.accelerate`: its tokens may differ)
    max_side: int | None
    frames: int | None
    clip_frames: int | None
    gop: int
    rdo: float


@dataclass
class BuildResult:
    clips: int  # rows this run wrote
    files: int  # files this run tokenized
    skipped: int  # files the shards already held
    failures: list[dict]  # {"path", "error"} of the files that failed, as in failures.jsonl
    shards: list[Path]  # the shards this run wrote
    seconds: float  # tokenizing and writing, after the model loaded


def schema(latent: bool, error: bool = False) -> pa.Schema:
    """The rows' columns. tokens: int32, the (S, h, w) grids row-major, `shape` [S, h, w]; a KL model's rows
    carry `latents` instead: float16, shape [S, C, h, w]. start: the clip's first frame in its file; width,
    height: after max_side; otok: the kept `.otok` file, relative to the folder (null when not kept).
    error: how the engines report a failed file (a row with only `path` and `error`), never written."""
    values = ("latents", pa.list_(pa.float16())) if latent else ("tokens", pa.list_(pa.int32()))
    return pa.schema([
        ("path", pa.string()), ("start", pa.int32()), ("frames", pa.int32()), ("fps", pa.float64()),
        ("width", pa.int32()), ("height", pa.int32()), ("shape", pa.list_(pa.int32())), values,
        ("model", pa.string()), ("weights_sha256", pa.string()), ("otok", pa.string()),
        *([("error", pa.string())] if error else []),
    ])


# ----- sources ------------------------------------------------------------------------------------------
def list_sources(sources: Iterable[str | os.PathLike]) -> list[str]:
    """The files to tokenize, each once, named as given: files as they are, the videos and images under
    folders (recursively, sorted), the entries of .txt lists (a path a line; # comments) and .csv lists (the
    `path` column, else the first), relative entries taken from the list's folder."""
    sources = [Path(s) for s in sources]
    paths: list[str] = []
    for source in sources:
        if source.is_dir():
            paths += map(str, media_files([source]))
        elif source.is_file() and source.suffix.lower() in (".txt", ".csv"):
            paths += [str(source.parent / entry) for entry in _list_entries(source)]
        elif source.exists():
            paths.append(str(source))
        else:
            raise InputError(f"{source}: no such file or folder")
    if not paths:
        raise InputError(f"no videos or images in {', '.join(map(str, sources))}")
    return list(dict.fromkeys(paths))


def _list_entries(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            if path.suffix.lower() == ".txt":
                return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
            rows = [row for row in csv.reader(f) if row]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text list of paths (UTF-8)") from None
    header = bool(rows) and "path" in rows[0]
    column = rows[0].index("path") if header else 0
    return [row[column] for row in rows[int(header):] if len(row) > column and row[column].strip()]


# ----- tokenizing ---------------------------------------------------------------------------------------
class FileTokenizer:
    """One file into a table of its rows (or of one row naming why it failed), with a loaded model: the
    local engine calls it in this process, the Ray engine in each of its actors."""

    def __init__(self, tok, options: Options, out: Path, coder: str = DEFAULTS.coder, also_otok: bool = False):
        self.tok, self.options, self.out, self.coder, self.also_otok = tok, options, Path(out), coder, also_otok
        self.priors = model_priors(tok)
        self.schema = schema(not tok.config.discrete, error=True)
        self.column = "tokens" if tok.config.discrete else "latents"
        self.scratch = tempfile.TemporaryDirectory(prefix="otok-dataset-")

    def table(self, path: str) -> pa.Table:
        try:
            rows = self.rows(path)
        except Exception as exc:  # noqa: BLE001 - a bad file never stops a corpus: it is listed with its reason
            text = str(exc) if isinstance(exc, OtokError) else f"{type(exc).__name__}: {exc}"
            rows = [{"path": path, "error": (text.strip().splitlines() or [type(exc).__name__])[0]}]
        return pa.Table.from_pylist(rows, schema=self.schema)

    def rows(self, path: str) -> list[dict]:
        o = self.options
        check_input(Path(path))
        rows: list[dict] = []
        with open_video(Path(path), o.max_side, o.frames) as reader:
            frames, start = iter(reader), 0
            while (first := next(frames, None)) is not None:
                clip = itertools.chain([first], itertools.islice(frames, o.clip_frames - 1 if o.clip_frames else None))
                kept = f"{OTOK}/{otok_name(path, start if o.clip_frames else None)}" if self.also_otok else None
                dst = self.out / kept if kept else Path(self.scratch.name) / "clip.otok"
                r = encode.encode_frames(clip, reader.info, dst, self.tok, coder=self.coder if kept else "raw",
                                           gop=o.gop, rdo=o.rdo, name=path)
                tokens = read_tokens(dst, prior=self.priors)
                rows.append({"path": path, "start": start, "frames": r.frames, "fps": float(r.fps), "width": r.width,
                             "height": r.height, "shape": list(tokens.shape),
                             self.column: tokens.astype("int32" if self.column == "tokens" else "float16").ravel(),
                             "model": o.model, "weights_sha256": o.weights_sha256, "otok": kept})
                start += r.frames
        if not rows:
            raise MediaError(f"{path}: has no frames")
        return rows


def otok_name(path: str, start: int | None) -> str:
    """A kept `.otok` file's name: the source's stem, a hash of its path (stems repeat across folders) and,
    for a clip, its first frame."""
    digest = hashlib.sha256(path.encode()).hexdigest()[:8]
    return f"{Path(path).stem}-{digest}{'' if start is None else f'-{start}'}.otok"


# ----- the folder ---------------------------------------------------------------------------------------
def prepare(out: Path, options: Options, overwrite: bool) -> set[str]:
    """The paths the folder's shards hold already (none for a new folder, or with overwrite, which deletes
    what an earlier run wrote); its dataset.json says `options` afterwards. Other options: ArgumentError."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; the output is a folder")
    manifest, shards = out / MANIFEST, sorted((out / SHARDS).glob("shard-*.parquet"))
    try:
        made = json.loads(manifest.read_text()) if manifest.is_file() else None
    except ValueError:
        raise InputError(f"{manifest}: not the JSON otok dataset writes") from None
    if made is None and shards:
        raise InputError(f"{out / SHARDS} holds shards but {out} no {MANIFEST}: not a folder otok dataset made")
    if made is not None and not overwrite:
        if made != asdict(options):
            changed = ", ".join(f"{k} {made.get(k)} (now {v})" for k, v in asdict(options).items() if made.get(k) != v)
            raise ArgumentError("overwrite", f"{out} holds tokens made with other options: {changed}; give another "
                                "folder, or overwrite=True to start it again")
        return {path for shard in shards for path in pq.read_table(shard, columns=["path"])["path"].to_pylist()}
    for old in [*shards, out / FAILURES, *(out / OTOK).glob("*.otok")]:
        old.unlink(missing_ok=True)
    write_atomically(manifest, json.dumps(asdict(options), indent=1).encode())
    return set()


def write_atomically(path: Path, data: bytes | pa.Table) -> None:
    """Write under a temporary name beside `path`, fsync, rename, fsync the folder: after a crash or a kill
    `path` is whole or absent (the temporary `.NAME.PID.partial` is hidden from pyarrow and HF datasets)."""
    with atomic_output(path) as tmp:
        if isinstance(data, pa.Table):
            pq.write_table(data, tmp, row_group_size=ROW_GROUP_ROWS)
        else:
            tmp.write_bytes(data)
        _fsync(tmp)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardWriter:
    """Buffers tables of rows and writes them as the next shards, each of about `rows` rows."""

    def __init__(self, folder: Path, rows: int) -> None:
        self.folder, self.rows, self.pending, self.written = folder, rows, [], []
        numbers = [int(p.stem[6:]) for p in folder.glob("shard-*.parquet") if p.stem[6:].isdigit()]
        self.number = max(numbers, default=-1) + 1

    def add(self, table: pa.Table) -> None:
        """A file's rows: they go into one shard."""
        if table.num_rows:
            self.pending.append(table)
        if sum(t.num_rows for t in self.pending) >= self.rows or sum(t.nbytes for t in self.pending) >= SHARD_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            path = self.folder / f"shard-{self.number:06d}.parquet"
            write_atomically(path, pa.concat_tables(self.pending))
            self.pending, self.number = [], self.number + 1
            self.written.append(path)


# ----- the command --------------------------------------------------------------------------------------
def build_dataset(
    sources: Iterable[str | os.PathLike], out: str | os.PathLike, *, model: str | os.PathLike | None = None,
    max_side: int | None = None, frames: int | None = None, clip_frames: int | None = None, gop: int | None = None,
    rdo: float | None = None, coder: str = DEFAULTS.coder, also_otok: bool = False, device: str = "cpu",
    engine: str = "local", workers: int | None = None, gpus_per_worker: float = 0, ray_address: str | None = None,
    shard_rows: int = 512, overwrite: bool = False, progress: bool = False,
) -> BuildResult:
    """`otok dataset SRC... --out DIR`: the files of `sources` (`list_sources`) into Parquet shards under
    `out`, one row per clip of `clip_frames` frames (default: one per file), skipping the files an earlier
    run with the same options wrote. max_side, frames, gop, rdo, model, device: as for `encode_file`; coder:
    of the `.otok` files kept with also_otok. engine "ray": Ray Data actors (`ray_engine`), `workers` of them
    with `gpus_per_worker` GPUs each, on the cluster at `ray_address` (default: a local Ray). A file that
    cannot be tokenized is listed in failures.jsonl; everything else raises the OtokError family."""
    out = Path(out)
    if engine not in ("local", "ray"):
        raise ArgumentError("engine", f"engine must be local or ray, got {engine!r}")
    if engine == "ray":
        try:
            from . import ray_engine
        except ImportError:
            raise ArgumentError("engine", f"engine ray needs Ray Data: {install_hint('ray')}") from None
    paths = list_sources(sources)
    tok = load_model(model, device if engine == "local" else "cpu")
    gop = tok.config.gop if gop is None else gop
    if gop < 1:
        raise ArgumentError("gop", f"gop must be at least 1 step, got {gop}")
    where = device.split(":")[0] if engine == "local" else "cuda" if gpus_per_worker else "cpu"
    options = Options(tok.config.name, tok.weights_sha256(), where, max_side, frames, clip_frames, gop,
                      encode.rdo_for(tok, rdo))
    done = prepare(out, options, overwrite)
    todo = [p for p in paths if p not in done]
    start = time.perf_counter()
    if not todo:
        tables: Iterable[pa.Table] = []
    elif engine == "local":
        tables = map(FileTokenizer(tok, options, out, coder, also_otok).table, todo)
    else:
        tables = ray_engine.tokenize(todo, model, options, out, coder, also_otok, workers, gpus_per_worker,
                                     ray_address)
    shards, failures, seen, clips = ShardWriter(out / SHARDS, shard_rows), [], set(), 0
    with tqdm(total=len(todo), unit="file", desc=f"dataset {out}", disable=not progress, leave=False) as bar:
        for table in tables:
            failed = pc.is_valid(table["error"])
            failures += table.filter(failed).select(["path", "error"]).to_pylist()
            rows = table.filter(pc.invert(failed)).drop_columns(["error"])
            shards.add(rows)
            clips += rows.num_rows
            files = set(table["path"].to_pylist())
            seen |= files
            bar.update(len(files))
    shards.flush()
    failures += [{"path": p, "error": "no result came back: the worker tokenizing it died, at every try"}
                 for p in todo if p not in seen]
    write_atomically(out / FAILURES, "".join(json.dumps(f) + "\n" for f in failures).encode())
    return BuildResult(clips, len(todo) - len(failures), len(paths) - len(todo), failures, shards.written,
                       time.perf_counter() - start)
