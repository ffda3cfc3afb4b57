"""Request and response models of the HTTP contract (design.md §3)."""
