"""FCM Studio dashboard: `streamlit run app/Home.py` (or `make app`).

Split inference made visible: pick images, configure 2-4 pipelines (split point, codec,
quality, wrapper) and compare what each costs (bits) and breaks (detections), with
feature maps, rate-accuracy curves and exports. All computing is fcmcore's; the page
layout lives in ``app/studio/``.
"""

import sys
from pathlib import Path

import streamlit as st

APP_DIR = Path(__file__).resolve().parent
# The page modules (app/studio) and this checkout's fcmcore, whoever launches the script
# (`streamlit run`, AppTest, a clone without `pip install -e .`).
for path in (APP_DIR.parent, APP_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

st.set_page_config(page_title="FCM Studio", layout="wide")  # no page_icon: icons would be fetched from a CDN

from studio import page  # noqa: E402

page.main()
