"""FCM Studio dashboard: Streamlit layout over ``fcmcore``'s public API.

``compute``  cached calls into fcmcore (models, head outputs, results, sweeps)
``inputs``   images: bundled samples and uploads (bytes in, InputError messages out)
``state``    per-session columns (configurations) in ``st.session_state``
``draw``     pictures: detections coloured by their match, feature-map grids, heat maps
``views``    the page's sections
"""
