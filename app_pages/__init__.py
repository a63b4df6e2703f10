"""The app's pages, routed by ``streamlit_app.py`` with ``st.navigation``; ``ui.py`` holds what they share.

Not named ``pages/``: Streamlit treats a ``pages/`` folder as the old automatic page list until some session has
run ``st.navigation``, so the first visitor after a restart who opened e.g. /predict directly would get a page
without the app's router (and ui.py listed as a page).
"""
