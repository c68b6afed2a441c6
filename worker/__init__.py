"""Celery workers: the turn pipeline and its tasks. Imports shared/, never api/."""
