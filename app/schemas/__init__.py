"""Request and response models of the HTTP contract, one module per task.

Request models turn a body into the task's items and params; response models name the task's
own result types, so the OpenAPI schema is generated from what the route really returns.
"""
