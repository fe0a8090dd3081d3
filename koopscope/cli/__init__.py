"""The `koopscope` command line: a thin shell over the library (torch imported lazily)."""
