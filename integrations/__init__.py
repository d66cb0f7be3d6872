"""Runnable examples of arktrack in real apps: copy the one that matches your stack.

- ``flask_app.py``: Flask, tracking as WSGI middleware (gunicorn or ``flask run``)
- ``starlette_app.py``: Starlette (and FastAPI), as ASGI middleware or a mount (uvicorn)
- ``smtp_mailer.py``: sending tracked mail through any SMTP server with ``smtplib``

All of them read ``ARKTRACK_SECRET_KEY``, ``ARKTRACK_BASE_URL`` and ``ARKTRACK_STORAGE``
from the environment, so a web app and a mailer given the same values share links and
numbers.
"""
