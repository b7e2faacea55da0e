"""The console: a browser tool for inspection officers (the live queue of their ports, a declaration's
history, recording inspection results) and risk analysts (risk lists, credit actions, figures,
dead letters). Server-rendered pages (FastAPI, Jinja2, htmx), live updates by server-sent events."""
