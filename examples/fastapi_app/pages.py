"""The app's two pages, as plain HTML strings (no template engine to install). Everything
that comes from a user is escaped."""

from __future__ import annotations

from html import escape

STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
label { display: block; margin-top: .5rem; }
.error { color: #b00020; }
.muted { color: #666; }
ul#jobs { list-style: none; padding: 0; }
ul#jobs li { margin: .75rem 0; }
progress { width: 100%; }
"""


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>")


def login(message: str = "") -> str:
    error = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    return _page("Sign in", f"""
<h1>Sign in</h1>
{error}
<form method="post" action="/login">
  <label for="username">Username</label>
  <input id="username" name="username" autocomplete="username" required>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <p><button type="submit">Sign in</button></p>
</form>
<p class="muted">Demo users: alice / alice-password, bob / bob-password.</p>""")


def jobs(user: str) -> str:
    # jobwire.js is loaded from the mount point, so it finds its endpoints under /realtime; it
    # gets no token: the session cookie signs its connection in (the hook in accounts.py).
    return _page("Your jobs", f"""
<h1>Your jobs</h1>
<form method="post" action="/logout">
  Signed in as <strong id="user">{escape(user)}</strong>.
  <button type="submit">Sign out</button>
</form>
<p><button type="button" id="start">Start job</button>
  <span id="connection" class="muted" role="status">Connecting…</span></p>
<ul id="jobs" aria-live="polite"></ul>
<p id="empty" class="muted">No jobs yet.</p>
<script src="/realtime/static/jobwire.js"></script>
<script src="/assets/jobs.js"></script>""")
