"""Loading job plugins from `handler_path` and listing the available ones."""
