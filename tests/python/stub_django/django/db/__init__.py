"""`django.db.close_old_connections`, which the pool runner calls after each task."""


def close_old_connections():
    pass
