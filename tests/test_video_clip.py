"""Video input: header facts, frame selection, bounds, and one clear error per bad clip."""

from __future__ import annotations

import numpy as np
import pytest
from video_clips import camera_frames, truncate, write_audio_only, write_video, write_zero_frames

from fcmcore.cli import main
from fcmcore.errors import InputError, ParameterError
from fcmcore.video import clip as clipmod
from fcmcore.video.clip import probe_clip, read_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    frames = camera_frames(12, (160, 120))
    out = {"frames": frames, "dir": d}
    out["mp4"] = write_video(d / "cam.mp4", frames, fps=10)
    out["mkv"] = write_video(d / "cam.mkv", frames, fps=12.5, codec="mpeg4")
    out["rot"] = write_video(d / "rot.mp4", frames[:3], fps=10, rotation=90)
    out["audio"] = write_audio_only(d / "sound.wav")
    out["zero"] = write_zero_frames(d / "empty.y4m")
    out["trunc_mp4"] = truncate(out["mp4"], d / "cut.mp4")
    out["trunc_mkv"] = truncate(out["mkv"], d / "cut.mkv")
    (d / "notes.mp4").write_text("not a video\n" * 20)
    out["text"] = d / "notes.mp4"
    big = [np.zeros((2600, 4608, 3), np.uint8)]
    out["huge"] = write_video(d / "huge.avi", big, codec="mjpeg", pix_fmt="yuvj420p")
    return out


def test_header_facts(clips):
    info = probe_clip(clips["mp4"])
    assert (info.width, info.height, info.frames, info.rotation) == (160, 120, 12, 0)
    assert info.fps == pytest.approx(10)
    assert probe_clip(clips["mkv"]).fps == pytest.approx(12.5)


def test_frames_match_what_was_written(clips):
    clip = read_clip(clips["mp4"])
    assert len(clip.frames) == 12 and clip.frames[0].shape == (120, 160, 3)
    err = np.abs(clip.frames[5].astype(int) - clips["frames"][5]).mean()
    assert err < 6  # H.264 at crf 20: the same picture, not another frame
    assert np.abs(clip.frames[5].astype(int) - clips["frames"][11]).mean() > err


def test_start_frames_stride(clips):
    clip = read_clip(clips["mp4"], start=2, frames=4, stride=3)
    assert clip.indices == [2, 5, 8, 11]
    assert clip.fps == pytest.approx(10 / 3)
    whole = read_clip(clips["mp4"])
    assert np.array_equal(clip.frames[1], whole.frames[5])
    with pytest.raises(ParameterError):
        read_clip(clips["mp4"], start=50)
    with pytest.raises(ParameterError):
        read_clip(clips["mp4"], stride=0)


def test_rotation_applied(clips):
    clip = read_clip(clips["rot"])
    assert clip.info.rotation == 90
    assert clip.frames[0].shape == (160, 120, 3)  # displayed upright: width and height swap
    upright = np.rot90(read_clip(clips["mp4"], frames=1).frames[0], 1)
    assert np.abs(clip.frames[0].astype(int) - upright).mean() < 6


def test_bounds(clips, monkeypatch):
    with pytest.raises(InputError, match="frame limit"):
        read_clip(clips["mp4"], max_frames=5)
    with pytest.raises(InputError, match="decoded-pixel limit"):
        read_clip(clips["mp4"], max_total_pixels=160 * 120 * 4)
    assert len(read_clip(clips["mp4"], frames=5, max_frames=5).frames) == 5


@pytest.mark.parametrize("kind, message", [
    ("text", "not a readable video"),
    ("audio", "no video stream"),
    ("trunc_mp4", "truncated"),
    ("trunc_mkv", "truncated"),
    ("zero", "zero frames"),
    ("huge", "limit per frame"),
])
def test_bad_clips_one_error_line(clips, kind, message, capsys):
    code = main(["video", str(clips[kind]), "--frames", "3", "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_missing_and_folder(clips, capsys):
    assert main(["video", str(clips["dir"] / "nope.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["video", str(clips["dir"])]) == 2
    assert "folder" in capsys.readouterr().err
