"""`ftconnect`: the command line over the library. Nothing else in the package imports it."""
