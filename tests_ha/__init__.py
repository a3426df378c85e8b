"""The Home Assistant integration's tests (a package, so modules can share helpers)."""
