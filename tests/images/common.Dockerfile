# Images shaped like common single-user images, for the default-policy verdicts
# (docs/admission-default-verdicts.md; built by rig/conda-images.sh). No registry is
# reachable, so each is built from the rig's single-user image to the shape of the original.
ARG BASE=hardened-spawner/singleuser:local

# Official single-user image (quay.io/jupyterhub/singleuser): a non-root user, no sshd,
# Debian's usual setuid/setgid binaries, a HEALTHCHECK, jupyterhub installed with pip.
FROM ${BASE} AS official
# the rig's image records ITS base (docker/Dockerfile); a test image says nothing of its own, as most images
LABEL org.opencontainers.image.base.name=""
USER root
RUN apt-get purge -y -qq openssh-server openssh-sftp-server >/dev/null \
 && chmod 4755 /usr/bin/su /usr/bin/passwd /usr/bin/chsh /usr/bin/chfn /usr/bin/gpasswd /usr/bin/mount /usr/bin/umount \
 && chmod 2755 /usr/bin/chage /usr/bin/expiry
USER 1000:100

# A data-science stack (scipy-notebook-like): the notebook's conda environment installed by
# a real installer, a second environment, and packages pip-installed on top of it.
FROM official AS datascience
USER root
RUN mv /opt/conda /opt/hs-pip
COPY envs/base/ /opt/conda/
COPY envs/analysis/ /opt/conda/envs/analysis/
COPY wheels/ /tmp/wheels/
RUN /opt/hs-pip/bin/python -m pip --python /opt/conda/envs/analysis/bin/python install -q --no-deps --no-index \
        --disable-pip-version-check /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels
USER 1000:100

# A notebook image on a CUDA base: the environment nvidia/cuda images set, a notebook user.
FROM official AS cuda
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility CUDA_VERSION=12.2.2 \
    NVIDIA_REQUIRE_CUDA="cuda>=12.2 brand=tesla,driver>=470,driver<471" NV_CUDA_CUDART_VERSION=12.2.140-1 \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
    PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The CUDA base as it ships: no USER, so root.
FROM cuda AS cudaroot
USER root
