"""rref as an OCI runtime: runc's command line over rref's core.

A bundle (config.json + rootfs) is read by `config` (checked before anything is
made), the container is created by `lifecycle` (its init waits in `init` until
`start`), its record lives in `store` (one directory per id under --root), hooks
run through `hooks`, and `cli` is the `rref-oci` / `rref oci` front.
"""
