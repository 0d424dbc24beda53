# Conda environments installed by a real installer (rig/conda-images.sh): py-rattler solved
# and installed them from the rig's private channel into staging directories (envs/), which
# are copied to their prefixes here. The interpreter is Debian's python3.11 through the
# channel's `python` venv-shim package (no CPython conda package can be built here).
ARG BASE=hardened-spawner/singleuser:local

# The notebook's environment: every package of the single-user image, as conda packages.
FROM ${BASE} AS real
# the rig's image records ITS base (docker/Dockerfile); a test image says nothing of its own, as most images
LABEL org.opencontainers.image.base.name=""
USER root
# the single-user image's venv moves aside: its pip does the `pip install` on top below
RUN mv /opt/conda /opt/hs-pip
COPY envs/base/ /opt/conda/
USER 1000:100

# Four more environments under /opt/conda/envs, one clean and three that break a rule each.
FROM real AS realenvs
COPY envs/analysis/ /opt/conda/envs/analysis/
COPY envs/legacy/ /opt/conda/envs/legacy/
COPY envs/crypto/ /opt/conda/envs/crypto/
COPY envs/vendor/ /opt/conda/envs/vendor/

# A real `pip install` into the clean second environment.
FROM real AS realpip
USER root
COPY envs/analysis/ /opt/conda/envs/analysis/
COPY wheels/ /tmp/wheels/
RUN /opt/hs-pip/bin/python -m pip --python /opt/conda/envs/analysis/bin/python install -q --no-deps --no-index \
        --disable-pip-version-check /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels
USER 1000:100
