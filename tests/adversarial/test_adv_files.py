"""Inputs that are not regular files, and hostile datasets: one clear line, never a hang,
a memory blow-up or a traceback. Through the library and through the CLI."""

from __future__ import annotations

import threading

import pytest
from conftest import assert_clean_error
from corpus import hostile_datasets, special_files

from fcmcore.errors import InputError
from fcmcore.imageio import load_image

REFUSED = {  # what the one line must say
    "fifo": "not a regular file",
    "dev_zero": "not a regular file",
    "dev_urandom": "not a regular file",
    "proc_mem": "cannot read",
    "symlink_to_dev_zero": "not a regular file",
    "symlink_loop": "symlink loop",
    "sparse_300mb": "limit",
    "folder": "folder",
}


@pytest.fixture(scope="module")
def specials(tmp_path_factory):
    return special_files(tmp_path_factory.mktemp("special"))


def _call_with_timeout(fn, seconds=20):
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "hung"
    return out


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_load_image_refuses_special_files(specials, kind):
    out = _call_with_timeout(lambda: load_image(specials[kind]))
    err = out.get("error")
    assert isinstance(err, InputError), out
    assert REFUSED[kind] in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "proc_mem", "symlink_to_dev_zero"])
def test_cli_detect_refuses_special_files(specials, kind, cli):
    # RLIMIT_DATA: reading /dev/zero to the end would die here instead of eating the machine
    proc = cli("detect", str(specials[kind]), "--split", "none", timeout=120, limit_memory_mb=3000)
    assert_clean_error(proc, REFUSED[kind])


def test_helper_contract(tmp_path):
    from fcmcore.imageio import check_regular_file, read_regular_file

    f = tmp_path / "x.bin"
    f.write_bytes(b"12345")
    assert check_regular_file(f, 5) == 5
    assert read_regular_file(f, 5) == b"12345"
    with pytest.raises(InputError, match="larger than"):
        check_regular_file(f, 4)
    with pytest.raises(InputError, match="no such file"):
        read_regular_file(tmp_path / "missing", 10)


# -- datasets --------------------------------------------------------------------------

DATASET_REFUSED = {
    "width_wide": "width",
    "height_negative": "height",
    "bbox_nan": "bbox",
    "bbox_inf": "bbox",
    "area_nan": "area",
    "bbox_negative": "bbox",
    "dotdot": "outside",
    "etc_hostname": "outside",
    "absolute": "outside",
    "symlink_out": "outside",
    "plain_symlink_out": "outside",
    "fifo_image": "not a regular file",
    "fifo_annotations": "not a regular file",
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    return hostile_datasets(tmp_path_factory.mktemp("datasets"))


@pytest.mark.parametrize("kind", sorted(DATASET_REFUSED))
def test_hostile_dataset_is_refused(datasets, kind):
    from fcmcore.evaluate import load_dataset

    out = _call_with_timeout(lambda: load_dataset(datasets[kind]))
    err = out.get("error")
    assert isinstance(err, InputError), out
    assert DATASET_REFUSED[kind] in str(err) and "\n" not in str(err), str(err)


@pytest.mark.parametrize("kind", ["width_wide", "bbox_nan", "etc_hostname", "fifo_annotations"])
def test_cli_sweep_refuses_hostile_dataset(datasets, kind, cli, tmp_path):
    proc = cli("sweep", "--dataset", str(datasets[kind]), "--split", "none", "--codec", "jpeg",
               "--qualities", "50", "--no-cache", "--workers", "1", "--quiet", "--out", str(tmp_path / "r.json"),
               timeout=120)
    assert_clean_error(proc, DATASET_REFUSED[kind])


def test_valid_dataset_still_loads(datasets, tmp_path):
    from corpus import coco_dataset

    from fcmcore.evaluate import load_dataset

    ds = load_dataset(coco_dataset(tmp_path / "ok"))
    assert len(ds) == 1 and ds.images[0].width == 48 and len(ds.annotations) == 1
