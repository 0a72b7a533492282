# chordnet container image: one static binary on an empty base (FROM scratch).
#
# Targets (docs/kubernetes.md, "Building the image"):
#   runtime   (the default, last stage)  compiles chordnet in a Rust image, then copies the static
#             binary into an empty image. Needs the base image (BUILDER_IMAGE) and crates.io,
#             and BuildKit (Docker 23+ builds with it by default; on older clients set
#             DOCKER_BUILDKIT=1), which builds only the stages the target needs:
#               docker build -t chordnet:0.1.0 .
#   prebuilt  the same runtime image from a static binary built beforehand, without pulling
#             anything: the build context is a directory holding only the binary, named chordnet.
#             It and the stages it builds on (`dirs`, `base`) come first, so the legacy builder
#             (DOCKER_BUILDKIT=0) builds it too:
#               RUSTFLAGS='-C target-feature=+crt-static' \
#                 cargo build --profile dist --target x86_64-unknown-linux-gnu
#               mkdir -p /tmp/chordnet-image
#               cp target/x86_64-unknown-linux-gnu/dist/chordnet /tmp/chordnet-image/
#               docker build --target prebuilt -t chordnet:0.1.0 -f Dockerfile /tmp/chordnet-image
#
# Runtime contract (both targets):
#   - runs as the numeric user 10001:10001 (no /etc/passwd needed), never as root;
#   - ENTRYPOINT /chordnet serve; add flags as the command (the Helm chart passes --config);
#   - peer protocol on 7000, REST API, probes and /metrics on 8080 (listening on 0.0.0.0);
#   - stored content in /data (CHORDNET_FILES__STORE_DIR), shared files in /shared
#     (CHORDNET_FILES__SHARED_DIR): both must be writable by 10001: mount volumes there (the
#     chart does; with docker run use -v or --tmpfs /data:uid=10001). The root filesystem can
#     be read-only. In both targets both directories exist, owned by 10001, so that a new named
#     volume mounted there is writable too (Docker gives it the directory's owner).
#   - no shell, no CA certificates, no time zone data: chordnet needs none of them.

# The Rust toolchain image; the crate needs a recent stable Rust (let chains: 1.88 or newer).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm

############################################################################################
# dirs: the empty /data and /shared of the image (an empty image has no shell to create them
# with, and the offline build context holds only the binary).
FROM scratch AS dirs
WORKDIR /rootfs/data
WORKDIR /rootfs/shared

############################################################################################
# base: the runtime image without its binary; `prebuilt` and `runtime` differ only in where
# the binary comes from.
FROM scratch AS base
COPY --from=dirs --chown=10001:10001 /rootfs/ /
ENV CHORDNET_API__LISTEN=0.0.0.0:8080 \
    CHORDNET_FILES__STORE_DIR=/data \
    CHORDNET_FILES__SHARED_DIR=/shared
USER 10001:10001
EXPOSE 7000 8080
ENTRYPOINT ["/chordnet", "serve"]

############################################################################################
# prebuilt: the runtime image around a binary from the build context (offline builds).
FROM base AS prebuilt
COPY chordnet /chordnet

############################################################################################
# prebuilt-dynamic: the same around a dynamically linked binary (the one `cargo test --release`
# builds), with its loader and libraries: the build context holds `chordnet` and `rootfs/` with
# the files `ldd chordnet` names at their paths. scripts/k8s-emulate.sh builds it in CI
# (CHORDNET_BIN) to spare a second release build; images for a cluster use `prebuilt` or
# `runtime` (static).
FROM base AS prebuilt-dynamic
COPY rootfs/ /
COPY chordnet /chordnet

############################################################################################
# builder: a static (crt-static, glibc) x86_64 binary.
FROM ${BUILDER_IMAGE} AS builder
WORKDIR /src
COPY . .
# The `dist` profile (Cargo.toml): whole-program optimisation (faster lookups, less memory per
# peer), no debug line tables (the symbol table stays: names in backtraces). Static and
# optimised, so build.rs lays out the functions of link/hot-symbols.txt first (idle memory).
RUN RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --profile dist --locked --target x86_64-unknown-linux-gnu --bin chordnet \
    && install -D -m 0755 target/x86_64-unknown-linux-gnu/dist/chordnet /rootfs/chordnet
# The image has no loader and no libraries: fail here, not with "no such file or directory"
# when a pod starts a dynamically linked binary.
RUN ldd /rootfs/chordnet 2>&1 | grep -qE 'statically linked|not a dynamic executable' \
    || { echo 'chordnet is not statically linked:' >&2; ldd /rootfs/chordnet >&2; exit 1; } \
    && /rootfs/chordnet --version

############################################################################################
# runtime: the default target.
FROM base AS runtime
COPY --from=builder /rootfs/chordnet /chordnet
