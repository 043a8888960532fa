"""FCM Studio, video mode: split inference on a clip, the feature frames coded as one video
stream (intra / low-delay P / random access), compared column by column and frame by frame.
The layout lives in ``app/studio/video_view.py``; all computing is ``fcmcore.video``'s."""

import sys
from pathlib import Path

import streamlit as st

APP_DIR = Path(__file__).resolve().parent.parent
for path in (APP_DIR.parent, APP_DIR):  # this checkout's fcmcore and the page modules
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

st.set_page_config(page_title="FCM Studio: video", layout="wide")

from studio import video_view  # noqa: E402

video_view.main()
