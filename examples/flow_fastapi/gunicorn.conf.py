# gunicorn -c examples/flow_fastapi/gunicorn.conf.py: two uvicorn workers serving app.py.
#
# The flow server is its own process, started beside gunicorn, so there is no preload_app and no
# on_starting/on_exit hooks (aqueduct needs those to fork its flow from the gunicorn master).
# Every worker connects to the flow server on its first request and again after the server comes
# back.
import os

_here = os.path.dirname(os.path.abspath(__file__))

wsgi_app = "app:app"
pythonpath = _here
worker_class = "uvicorn.workers.UvicornWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
bind = os.environ.get("SLUICE_HTTP_BIND", "127.0.0.1:8000")
raw_env = ["SLUICE_FLOW_SOCKET=" + os.environ.get("SLUICE_FLOW_SOCKET", "/tmp/sluice-flow.sock")]
graceful_timeout = 10
