FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY automation automation
COPY communities communities
COPY integrations integrations
COPY notifications notifications
COPY billing billing
COPY analytics analytics
COPY moderation moderation
COPY templates templates
COPY manage.py Procfile ./
RUN pip install --no-cache-dir . && mkdir -p var/prometheus \
    && DEBUG=true python manage.py collectstatic --noinput -v 0
EXPOSE 8000 5555
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]
