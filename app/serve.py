"""Serve the dashboard with its heavy work done before the first visitor: `python app/serve.py`
(what `make app` runs; any `streamlit run` option may follow, e.g. `--server.port 8502`).

Streamlit runs the page script only when a browser connects, so with plain `streamlit run
app/Home.py` the first visitor waits for fcmcore's imports (torch, CompressAI, the codecs'
libraries: ~4 s here) and the detector's weights (~1 s). This launcher imports them and runs
the default pipeline once in the server process before the server starts; the page script
then finds them in ``sys.modules`` and fcmcore's model cache. Same page, same options.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent


def warm() -> float:
    """Imports + the default detector + one run of the default pipeline; returns seconds."""
    start = time.perf_counter()
    sys.path[:0] = [p for p in (str(APP_DIR.parent), str(APP_DIR)) if p not in sys.path]
    import numpy as np
    from PIL import Image

    import fcmcore.builtins  # noqa: F401  (every codec, model and wrapper registered: CompressAI, PyAV, ...)
    from fcmcore.codecs import list_codecs
    from fcmcore.models import DEFAULT_MODEL, load_model
    from fcmcore.pipeline import DEFAULT_CODEC, DEFAULT_SPLIT, PipelineConfig, run

    [c.to_json() for c in list_codecs()]  # availability probes (the page's codec table)
    load_model(DEFAULT_MODEL)
    run(Image.fromarray(np.full((96, 128, 3), 127, np.uint8)),
        PipelineConfig(model=DEFAULT_MODEL, split=DEFAULT_SPLIT, codec=DEFAULT_CODEC))
    import altair  # noqa: F401  (the charts; the page's own modules are left to Streamlit's runtime,
    # since their st.cache_* decorators must be created inside it)

    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from streamlit.web import cli as streamlit_cli

    seconds = warm()
    print(f"FCM Studio: fcmcore and the default detector loaded in {seconds:.1f} s", flush=True)
    sys.argv = ["streamlit", "run", str(APP_DIR / "Home.py"), *(sys.argv[1:] if argv is None else argv)]
    return streamlit_cli.main()


if __name__ == "__main__":
    raise SystemExit(main())
