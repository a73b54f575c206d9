"""The Streamlit dashboard: ``app.py`` is the frame (``st.navigation``, filters, sign-in, Redis banner), one module
per page.

``data`` reads Redis (through the key modules and ``stream/``'s read functions) behind Streamlit's caches;
``filters`` draws the filters every page honours; ``auth`` signs users in; ``ui`` holds what pages share (times in
the chosen timezone, plain user text, charts). Pages: ``command_centre``, ``incidents_page``, ``service_page``,
``customers_page``, ``channels_page``, ``reports_page``, ``models_page``, ``audit_page`` and the ``wall``. A new
page is a module with ``render(settings, filters)`` and one ``st.Page`` line in ``app.py``.
"""
