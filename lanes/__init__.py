"""Lanes: the project's tests run on a kernel other than the host's.

The host of these runners is hybrid cgroup v1, while most users' runners are
pure cgroup v2. The v2 lane boots Debian's own 6.1 kernel in a qemu guest that
shares the host's root read-only, mounts only cgroup2, runs the v2 part of the
tests there and brings the results back (`conform lane v2`, `make test-v2`).
"""
