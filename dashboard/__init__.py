"""The Streamlit dashboard: ``app.py`` is the frame (``st.navigation``), one module per page.

``data`` reads Redis (through ``stream.keys`` / ``stream.metrics``) behind Streamlit's caches;
``command_centre`` is the live wall display. A new page is a module with ``render(settings)`` and one
``st.Page`` line in ``app.py``.
"""
