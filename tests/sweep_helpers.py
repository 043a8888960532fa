"""Helpers the sweep/bdrate test files share (imported as a sibling module, like video_clips)."""

from __future__ import annotations


def run_cli(argv, monkeypatch) -> int:
    """``fcm ARGV`` in this process with only the command modules these suites need (others
    may not be installed in every checkout)."""
    import fcmcore.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["fcmcore.cli.detect", "fcmcore.cli.evaluate", "fcmcore.cli.compare"])
    return cli.main(argv)


def comparable(doc):
    """Everything in a results document that must not depend on how the work was spread."""
    out = []
    for c in doc["curves"]:
        pts = [{k: v for k, v in p.items() if k not in ("timings_ms", "cached_images", "images")}
               | {"rows": [{k: v for k, v in r.items() if k != "cached"} for r in p["images"]]}
               for p in c["points"]]
        ref = {k: v for k, v in c["reference"].items() if k not in ("timings_ms", "cached_images", "images")}
        out.append((c["name"], c["results"], ref, pts))
    return out
