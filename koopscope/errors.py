"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class KoopscopeError(Exception):
    """A mistake the user can fix (bad path, wrong checkpoint kind, missing data)."""


class DatasetNotFound(KoopscopeError):
    """A dataset's files are not where we looked."""


class CheckpointError(KoopscopeError):
    """A checkpoint is unreadable, foreign, corrupt or of the wrong kind."""
