"""``python -m bench``: the pipeline against a raw-client ceiling and a naive Faust agent.

One embedded broker, one generated set of declarations, four systems under test (see runner.py).
"""
