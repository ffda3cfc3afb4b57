"""Model catalog, model specs and the registry that loads and serves them."""
