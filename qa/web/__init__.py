"""The web chat's parts below the Gradio layout (`app.py`): who may call what, sessions, uploads, HTML.

Only `app.py` imports these modules; they need the `[app]` extra (Gradio, Starlette), and `import qa`
does not import them.
"""
