"""A stand-in for the parts of Django the pool runner looks at (tests only)."""
