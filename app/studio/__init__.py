"""FCM Studio dashboard: Streamlit layout over ``fcmcore``'s public API.

``page``     the page: top bar, sidebar, the columns, the tabs, the export tab
``columns``  one column: header, settings popover, picture and numbers (an ``st.fragment``)
``maps``     feature-maps tab      ``bits``  bit-allocation tab
``rd``       rate–accuracy tab     ``bdtable``  its BD-rate table
``charts``   the Altair charts     ``draw``  pictures (boxes, feature grids, colour bars)
``compute``  cached calls into fcmcore (models, head outputs, results, sweeps)
``inputs``   images: bundled samples and uploads; ``uploads`` the private folder sweeps read
``state``    per-session columns; ``keys`` every session-state key; ``url`` the shareable link
``fmt``      numbers and names as printed (3 significant digits, Markdown escaping)
"""
