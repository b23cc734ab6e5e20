"""The web chat: the Gradio page (`app`) and its parts below it: who may call what, sessions, uploads, HTML.

Only `qa/web/app.py` (and `qa serve`, which starts it) imports these modules; they need the `[app]` extra
(Gradio, Starlette), and `import qa`
does not import them.
"""
