"""Every use of Faust beyond its public API, behind one small adapter (contract tests in tests/unit/streams/runtime/)."""
