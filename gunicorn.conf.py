"""gunicorn's settings for Soundalike (`gunicorn` in the repository root reads this file).

One worker process holds the model and the index; its threads share them. Threads and not
processes, because each process would load its own copy of the network."""
from model.settings import from_env

_settings = from_env()
wsgi_app = "app:create_app()"
bind = f"{_settings.host}:{_settings.port}"
workers = 1
worker_class = "gthread"
threads = 4
# Loading the model and building the index happen in the worker, before it first reports in.
timeout = 300
