# syntax=docker/dockerfile:1
#
# The operator image: `docker build -t desktop-image-operator:0.1.0 .`
#
# Two stages. The builder turns the project into a wheel and installs that wheel with its pinned
# dependencies into a virtual environment at /opt/venv; the runtime stage copies only that environment
# onto a clean interpreter. Every dependency must come as a prebuilt wheel (--only-binary), so neither
# stage needs a compiler and the runtime stage holds no build tools at all.
#
# Only the operator's own package is built: the development package (devtools/) never enters the build
# context, and the runtime dependencies carry no build tools (no SDK pulling grpcio-tools or setuptools).
#
# The base image is pinned to a Python patch release and a Debian release. For byte-for-byte
# reproducible builds pin its digest as well, the same in both stages, e.g.
#   ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
# where <digest> is what `docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints as
# "Digest" (the multi-platform index, so the pin holds on amd64 and arm64 alike).
#
# The image runs as the unprivileged user 65532 and writes nothing at run time, so it works with a
# read-only root filesystem; the Helm chart mounts a small emptyDir at /tmp, where logging in with a
# kubeconfig's certificate data writes the certificate for a moment (the ServiceAccount needs no such file).
#
# tests/delivery/test_dockerfile.py lints this file with hadolint and replays the builder's RUN steps
# outside a container; keep the install steps in RUN instructions of the builder stage.
# tests/delivery/test_runtime_venv.py weighs the replayed /opt/venv (under 200 MB) and checks its bytecode.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    WHEELHOUSE=/build/wheels

WORKDIR /build/src
# Only what the wheel is built from (.dockerignore keeps caches and local environments out).
COPY pyproject.toml README.md ./
COPY operator/ operator/

# The project's own wheel; setuptools comes from the build requirements in pyproject.toml.
RUN python -m pip wheel --no-deps --wheel-dir "$WHEELHOUSE" .

# A virtual environment without pip (the runtime needs none), filled by the builder's pip.
#
# The bytecode is compiled here, by the environment's own interpreter, since the image writes nothing at
# run time (PYTHONDONTWRITEBYTECODE, read-only root filesystem): a module without a .pyc would be compiled
# again in memory at every start. pip installs without compiling and compileall compiles everything:
# unlike pip, which skips a file that does not compile without a word, compileall fails the build on it.
RUN python -m venv --without-pip "$VIRTUAL_ENV" \
    && python -m pip --python "$VIRTUAL_ENV/bin/python" install --no-compile --only-binary=:all: \
        "$WHEELHOUSE"/*.whl \
    && "$VIRTUAL_ENV/bin/python" -m compileall -q -j 0 "$VIRTUAL_ENV/lib"


FROM ${PYTHON_IMAGE}

# Where the image comes from, set by the build (the release workflow passes the tag, the commit and the
# repository URL), e.g. `--build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)"`.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown

LABEL org.opencontainers.image.title="desktop-image-operator" \
      org.opencontainers.image.description="Kubernetes operator for Yandex Cloud Desktop images" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

# The packaging tools of the base interpreter are not needed to run the operator: drop them. The
# user gets a fixed numeric id (Kubernetes checks runAsNonRoot against the number) and a home
# directory that is never written.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && groupadd --system --gid 65532 nonroot \
    && useradd --system --no-log-init --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home \
        --shell /usr/sbin/nologin nonroot

COPY --from=builder /opt/venv /opt/venv

# USER and HOME name the account without /etc/passwd: kopf names its instance after the user
# (getpass.getuser), which fails when a runtime assigns a uid the image does not know.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    USER=nonroot \
    HOME=/home/nonroot

USER 65532:65532
WORKDIR /home/nonroot

# 8080: Prometheus /metrics; 8081: the liveness endpoint /healthz.
EXPOSE 8080 8081

# The command line is the entry point, so every user command runs from the image
# (`docker run IMAGE import --folder-id ...`, `kubectl run ... -- import ...`); the operator by default.
ENTRYPOINT ["desktop-image-operator"]
CMD ["run"]
