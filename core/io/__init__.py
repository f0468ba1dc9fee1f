"""The io layer: every file and path a loader or writer touches goes through here."""
