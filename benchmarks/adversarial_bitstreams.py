"""Damage detection and size caps of the feature container, measured.

    PYTHONPATH=. python benchmarks/adversarial_bitstreams.py [--n 300] [--codecs png,jpeg,hevc]

1. Mutation campaign: N mutated copies (1-3 random byte flips, cuts or inserts; seeded) of a
   real stream per frame codec, each decoded with ``decode_features``: how many are refused
   (BitstreamError), decode to the original features, decode to *different* features
   (silent damage), or fail some other way (a bug).
2. Forged sizes: a stream whose checksum is correct but whose header declares one huge
   frame (the payload is a real, flat PNG of that size: 62 KB for 8000x8000), decoded in a
   child process: wall time and the child's peak RSS over its RSS before decoding.

Works against any checkout (run it with PYTHONPATH pointing at the code to measure), so
the same script gives the before and after figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import torch


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["flip", "cut", "insert"])
        pos = int(rng.integers(0, len(buf) + (kind == "insert")))
        if kind == "flip" and pos < len(buf):
            buf[pos] ^= int(rng.integers(1, 256))
        elif kind == "cut":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = bytes([int(rng.integers(0, 256))])
        if not buf:
            break
    return bytes(buf)


def campaign(codec_name: str, n: int) -> dict:
    from fcmcore.bitstream import decode_features, encode_features
    from fcmcore.codecs import get_codec
    from fcmcore.errors import BitstreamError

    codec = get_codec(codec_name)
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(1, 64, 7, 7, generator=g)
    feats = {"expanded_conv_9": torch.nn.functional.interpolate(coarse, size=(19, 19), mode="bilinear")}
    data = encode_features(feats, codec, codec.quality.default).data
    reference = decode_features(data, codec).features
    rng = np.random.default_rng(12)
    out = {"codec": codec_name, "stream_bytes": len(data), "mutated": 0, "unchanged_bytes": 0, "refused": 0,
           "decoded_same": 0, "decoded_different": 0, "other_error": 0}
    for _ in range(n):
        bad = mutate(data, rng)
        if bad == data:
            out["unchanged_bytes"] += 1
            continue
        out["mutated"] += 1
        try:
            dec = decode_features(bad, codec).features
        except BitstreamError:
            out["refused"] += 1
            continue
        except Exception:  # noqa: BLE001 - counted: any of these is a bug
            out["other_error"] += 1
            continue
        same = list(dec) == list(reference) and all(torch.equal(dec[k], reference[k]) for k in reference)
        out["decoded_same" if same else "decoded_different"] += 1
    return out


CHILD = textwrap.dedent("""
    import json, resource, struct, sys, time, zlib, io
    import numpy as np
    from PIL import Image
    from fcmcore import bitstream
    from fcmcore.byteio import encode_varint
    from fcmcore.codecs import get_codec
    from fcmcore.errors import FCMError
    side = int(sys.argv[1])
    buf = io.BytesIO(); Image.new("L", (side, side), 7).save(buf, "PNG", optimize=True); payload = buf.getvalue()
    v = bitstream.VERSION
    head = bytes([v, 8]) + encode_varint(1) + bytes([1]) + b"x" + bytes([2]) + encode_varint(1)
    head += encode_varint(side) + encode_varint(side) + np.array([0.0, 1.0], "<f2").tobytes()
    head += encode_varint(len(payload))
    data = head + payload
    if v >= 2:
        data += struct.pack("<I", zlib.crc32(data))
    codec = get_codec("png")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    try:
        bitstream.decode_features(data, codec)
        outcome = "decoded"
    except FCMError as exc:
        outcome = "refused: " + str(exc)[:90]
    except MemoryError:
        outcome = "MemoryError"
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"side": side, "stream_bytes": len(data), "seconds": round(dt, 4),
                      "extra_peak_mb": round((peak - before) / 1024, 1), "outcome": outcome}))
""")


def forged(side: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(side)], capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode:
        return {"side": side, "outcome": f"child failed: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--codecs", default="png,jpeg,hevc")
    p.add_argument("--sides", default="8000", help="forged frame sides, comma-separated")
    args = p.parse_args()
    torch.set_num_threads(1)
    import fcmcore

    print(f"# code: {os.path.dirname(fcmcore.__file__)}")
    for name in args.codecs.split(","):
        print(json.dumps(campaign(name, args.n)))
    for side in args.sides.split(","):
        print(json.dumps(forged(int(side))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
