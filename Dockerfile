FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY content ./content
COPY sync ./sync
COPY edge ./edge
COPY server ./server
COPY clients ./clients
COPY cli ./cli
RUN pip install . && useradd --system --home /data satchel && mkdir -p /data && chown satchel /data

USER satchel
VOLUME ["/data"]
EXPOSE 8000
CMD ["satchel", "serve", "--data", "/data", "--host", "0.0.0.0", "--port", "8000"]
