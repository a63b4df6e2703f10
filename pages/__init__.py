"""The app's pages, routed by ``streamlit_app.py`` with ``st.navigation``; ``ui.py`` holds what they share.

Streamlit serves a ``pages/`` folder as its old automatic page list until some session has run
``st.navigation``; each page therefore starts with ``ui.require_router(__file__)``, which sends such a first
visit through the router (tests/e2e/test_browser.py checks it in a real browser).
"""
