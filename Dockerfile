# tcsms-poller as a container: the daemon as PID 1 (exec form, so SIGTERM reaches it), running as
# an unprivileged numeric user, its state in a volume, JSON logs on stdout, a HEALTHCHECK that
# asks the listener's /healthz. See docs/operations.md for `docker run` and compose examples.
#
#   docker build -t tcsms-poller .

# --- build: the package and its pinned dependencies in a venv under /opt -------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Only what `pip install .` reads (the .dockerignore keeps everything else out of the context).
COPY pyproject.toml constraints.txt README.md ./
COPY daemon/ ./daemon/
# Exact versions from constraints.txt; the same venv layout as the systemd install.
RUN python -m venv /opt/tcsms-poller \
 && /opt/tcsms-poller/bin/pip install --no-cache-dir -c constraints.txt . \
 && /opt/tcsms-poller/bin/tcsms-poller --version \
 && /opt/tcsms-poller/bin/tcsms-poller example-config > /dev/null

# --- runtime: the venv alone on the same base (its python symlink points at the same path) -------
FROM python:3.11-slim-bookworm
COPY --from=build /opt/tcsms-poller /opt/tcsms-poller
# PYTHONUNBUFFERED: each log line reaches `docker logs` as it is written.
# TCSMS_STATE_PATH: the example configuration's state.path follows it into the volume (the
# example ships in the package: `docker run --rm tcsms-poller example-config`).
# CREDENTIALS_DIRECTORY: `secret_key_file: tencent-secret-key` finds Docker/compose secrets, as
# under systemd it finds LoadCredential= ones: one configuration serves both.
ENV PATH=/opt/tcsms-poller/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TCSMS_STATE_PATH=/var/lib/tcsms-poller/state.db \
    CREDENTIALS_DIRECTORY=/run/secrets
# The state directory belongs to the runtime user before it becomes a volume, so a fresh named
# volume starts out writable by it; the configuration is mounted read-only into /etc/tcsms-poller.
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/tcsms-poller \
 && install -d -m 0755 /etc/tcsms-poller
VOLUME /var/lib/tcsms-poller
# A numeric UID:GID, so runtimes can check "not root" without an /etc/passwd entry.
USER 10001:10001
# The listener (server.listen: 0.0.0.0:8787 in a container), when configured.
EXPOSE 8787
# What the daemon treats as "stop gracefully"; give it time: docker run --stop-timeout 60.
STOPSIGNAL SIGTERM
# Needs `server` in the configuration. The daemon writes its /healthz URL (a 0.0.0.0 listener
# asked on 127.0.0.1) beside its state once the listener serves: the check parses no
# configuration and needs none of its secrets or environment.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["tcsms-poller", "healthcheck", "--url-file", "/var/lib/tcsms-poller/healthz.url"]
# Exec form: no shell between the runtime and the daemon, so signals reach it and exit codes
# (0, 1, 2, 78) come back unchanged. Arguments after the image name replace CMD.
ENTRYPOINT ["tcsms-poller"]
CMD ["run", "-c", "/etc/tcsms-poller/config.yaml"]
