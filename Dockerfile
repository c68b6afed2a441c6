# Parley: one image for the API, the Celery worker, Flower, migrations and the offline model.
# Each service in docker-compose.yml picks its process with `command:`; the default is the API.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system --gid 10001 parley \
 && useradd --system --uid 10001 --gid parley --create-home --home-dir /home/parley parley

# Dependency layer: only rebuilt when requirements.txt changes.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The code stays owned by root (read-only for the app); only var/ is writable.
COPY . .
RUN mkdir -p /app/var && chown parley:parley /app/var

USER parley

EXPOSE 5000

CMD ["gunicorn", "-c", "api/gunicorn_conf.py", "-b", "0.0.0.0:5000", "api.wsgi:app"]
