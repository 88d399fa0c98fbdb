FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
# The app runs as an unprivileged user: it owns only its data (cache) folder, not the code.
RUN useradd --create-home --uid 10001 --user-group fer
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN mkdir -p /app/cache/import && chown -R fer:fer /app/cache
USER fer
ENV FER_CACHE_DIR=/app/cache
VOLUME ["/app/cache"]
EXPOSE 8501
# 0.0.0.0 only so that the published port reaches the app inside the container. The app has no login:
# publish it on the host's loopback (-p 127.0.0.1:8501:8501) or behind a reverse proxy that
# authenticates (README, "Serving it to others"). Import from a server path stays off on this address
# (FER_ALLOW_PATH_IMPORT is deliberately not set here); uploads and Kaggle downloads work.
CMD ["streamlit", "run", "app.py", "--server.headless", "true", "--server.address", "0.0.0.0", \
     "--server.port", "8501", "--browser.gatherUsageStats", "false"]
