# One image for `app` and `app-cluster`. The dependencies are installed from the lock file in a
# layer of their own, so a change of code rebuilds only the last layers.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock \
    && useradd --system --uid 10001 --no-create-home app

# The service runs from its source tree (as `make run` does): installing the project itself would
# fetch a build backend on the day the image is built.
COPY run.py ./
COPY api ./api
COPY storage ./storage

USER app
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-m", "api.healthcheck"]
CMD ["python", "run.py"]
