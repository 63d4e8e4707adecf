# The hmm-fem environment: Debian unstable's FEniCSx packages plus the package itself.
# The package lists in docker/ are the single source of truth; docker/run builds the
# same environment without Docker (mmdebstrap), from the same lists.
#
#   docker build -t hmm-fem .
#   docker run --rm -it -v "$PWD/results:/opt/hmm-fem/results" hmm-fem make demo
FROM debian:sid-slim

# The sid mirror may serve a Release file past its Valid-Until date.
RUN echo 'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/99hmm-fem

COPY docker/packages.txt docker/pypi.txt /tmp/hmm-fem/
# With Recommends, as mmdebstrap installs them in the root of docker/run (same package set).
RUN apt-get update \
    && grep -v '^\s*#' /tmp/hmm-fem/packages.txt | grep -v '^\s*$' \
       | xargs env DEBIAN_FRONTEND=noninteractive apt-get install -y \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m pip install --no-cache-dir --break-system-packages -r /tmp/hmm-fem/pypi.txt

# Open MPI refuses root without these; shared-memory transport starts in ~0.6 s.
ENV OMPI_ALLOW_RUN_AS_ROOT=1 \
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_pml=ob1 \
    OMPI_MCA_btl=self,sm \
    OMPI_MCA_osc=^ucx \
    UCX_MEM_EVENTS=no \
    PIP_BREAK_SYSTEM_PACKAGES=1

COPY . /opt/hmm-fem
WORKDIR /opt/hmm-fem
RUN python3 -m pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/hmm-fem
CMD ["hmm-fem", "--help"]
