"""The web app for gunicorn: ``gunicorn -w 4 -b 127.0.0.1:8080 'cloud.wsgi:app'``.

Configuration comes from the environment (``VOXFLEET_DATA_DIR``, ``VOXFLEET_DATABASE_URL``,
``VOXFLEET_BROKER_URL``, ...). Run ``voxfleet cloud db upgrade`` before starting workers, and beside
it the ingest workers (``voxfleet cloud ingest --workers N``) and the webhook delivery worker
(``voxfleet cloud webhooks run``: the app only queues deliveries); see cloud/serve.py.
"""

from cloud.app import create_app

app = create_app()
