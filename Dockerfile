# FCM Studio dashboard on port 8501.
#   docker build -t fcm-studio .
#   docker run --rm -p 8501:8501 fcm-studio        # then open http://localhost:8501
# Optional: mount a torch hub cache to use torchvision's detectors with real weights:
#   docker run --rm -p 8501:8501 -v $HOME/.cache/torch:/home/fcm/.cache/torch fcm-studio
FROM python:3.11-slim

# libgl1 + libglib2.0-0: opencv-python's shared-library needs on a slim image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home fcm

WORKDIR /opt/fcm-studio
COPY pyproject.toml requirements-compressai.txt README.md ./
COPY fcmcore ./fcmcore
COPY app ./app
COPY assets ./assets
COPY .streamlit ./.streamlit

# CPU-only torch keeps the image small (the default wheel on PyPI bundles CUDA).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url "$TORCH_INDEX_URL" \
 && pip install --no-cache-dir -e . \
 && pip install --no-cache-dir --no-deps -r requirements-compressai.txt \
 && python -c "import fcmcore.models, compressai"

USER fcm
ENV FCM_CACHE_DIR=/home/fcm/.cache/fcm-studio
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health')"
CMD ["python", "app/serve.py", "--server.port=8501", "--server.address=0.0.0.0"]
