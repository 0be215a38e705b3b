"""Product: what changed between two dump directories or catalogs (``knollm diff``)."""
