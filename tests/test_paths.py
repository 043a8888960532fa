"""Paths written into results files and recorded commands name no location of this machine."""

from __future__ import annotations

from pathlib import Path

from fcmcore.paths import REPO_DIR, portable


def test_portable_names_the_checkout_the_cache_and_home_by_token(monkeypatch, tmp_path):
    cache = tmp_path / "fcm-cache"
    monkeypatch.setenv("FCM_CACHE_DIR", str(cache))
    assert portable(cache / "results.sqlite") == "$FCM_CACHE_DIR/results.sqlite"
    assert portable(cache) == "$FCM_CACHE_DIR"
    assert portable(REPO_DIR / "assets" / "learned") == "assets/learned"
    assert portable(Path.home() / "x.json") == "~/x.json"
    # a sibling whose name starts like the cache folder is not inside it
    assert portable(str(cache) + "-other/a") == str(cache) + "-other/a"
    assert portable(None) is None


def test_portable_without_a_cache_variable_leaves_other_paths_alone(monkeypatch, tmp_path):
    monkeypatch.delenv("FCM_CACHE_DIR", raising=False)
    assert portable(tmp_path / "a") == str(tmp_path / "a")
