"""Search backends behind one `SearchBackend` protocol."""
